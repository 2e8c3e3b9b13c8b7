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
        root.Subcommands.Add(CheckKernelsCommand.Create(referenceBackend: null));
        return root;
    }

    public static int Run(string[] args)
    {
        var root = BuildRoot();
        try
        {
            return root.Parse(args).Invoke();
        }
        catch (UserException e)
        {
            Console.Error.WriteLine($"bert: error: {e.Message}");
            return e.ExitCode;
        }
    }
}
