using System.CommandLine;
using Bert.Cli.Commands;

namespace Bert.Cli;

public static class Program
{
    public static int Main(string[] args) => Run(args);

    /// <summary>Builds the command tree; tests call this to check parsing and errors.</summary>
    public static RootCommand BuildRoot()
    {
        var root = new RootCommand("bert: pretrain and fine-tune BERT in C# (CPU or NVIDIA GPU)");
        root.Subcommands.Add(InfoCommand.Create());
        root.Subcommands.Add(PretrainCommand.Create());
        root.Subcommands.Add(VocabCommand.Create());
        root.Subcommands.Add(PrepareCommand.Create());
        root.Subcommands.Add(ExportCommand.Create());
        root.Subcommands.Add(ImportCommand.Create());
        root.Subcommands.Add(FinetuneCommand.Create());
        root.Subcommands.Add(FillMaskCommand.Create());
        root.Subcommands.Add(EmbedCommand.Create());
        return root;
    }

    public static int Run(string[] args)
    {
        var root = BuildRoot();
        try
        {
            // Without this, System.CommandLine's default handler catches UserException first, prints
            // a stack trace and exits 1 instead of the documented exit code.
            return root.Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (UserException e)
        {
            Console.Error.WriteLine($"bert: error: {e.Message}");
            return e.ExitCode;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"bert: internal error (please report it): {e}");
            return ExitCodes.Internal;
        }
    }
}
