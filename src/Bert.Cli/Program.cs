using System.CommandLine;
using System.CommandLine.Parsing;
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
        root.Subcommands.Add(DistCheckCommand.Create());
        root.Subcommands.Add(EvalCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(VocabCommand.Create());
        root.Subcommands.Add(PrepareCommand.Create());
        root.Subcommands.Add(ExportCommand.Create());
        root.Subcommands.Add(ImportCommand.Create());
        root.Subcommands.Add(CheckKernelsCommand.Create(() => new Bert.Runtime.Cpu.CpuBackend()));
        root.Subcommands.Add(FinetuneCommand.Create());
        root.Subcommands.Add(FillMaskCommand.Create());
        root.Subcommands.Add(EmbedCommand.Create());
        root.Subcommands.Add(PredictCommand.Create());
        return root;
    }

    public static int Run(string[] args)
    {
        var root = BuildRoot();
        try
        {
            RunConfig.Current = null;
            args = RunConfig.Expand(args, root);
            var parse = root.Parse(args);
            if (parse.Errors.Count > 0)
            {
                // System.CommandLine would print help and exit 1, the code of an internal error.
                if (args.Length == 0) root.Parse(["--help"]).Invoke();
                foreach (var error in parse.Errors) Console.Error.WriteLine($"bert: error: {error.Message}");
                string command = parse.CommandResult.Command == root ? "bert" : "bert " + parse.CommandResult.Command.Name;
                Console.Error.WriteLine($"run '{command} --help' for the options");
                return ExitCodes.Usage;
            }
            if (EmptyValue(parse) is { } empty)
            {
                Console.Error.WriteLine($"bert: error: {empty.Option} '{empty.Value}': expects a value (a path, name or number), not a blank string");
                return ExitCodes.Usage;
            }
            // With --help nothing runs, and System.CommandLine reports no parse errors: an option may lack its value.
            if (parse.CommandResult.Command.Name is "pretrain" or "finetune" && parse.Action is not System.CommandLine.Help.HelpAction)
                RunConfig.Current = RunConfig.Effective(parse);
            // Without this, System.CommandLine's default handler catches exceptions first, prints a
            // stack trace and exits 1 instead of the documented exit code.
            return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null });
        }
        catch (Exception e) when (CliErrors.Translate(e) is { } user)
        {
            Console.Error.WriteLine($"bert: error: {user.Message}");
            return user.ExitCode;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"bert: internal error (please report it): {e}");
            return ExitCodes.Internal;
        }
    }

    /// <summary>The first string option given an empty or blank value (<c>--out ''</c>), which every
    /// path API rejects with an ArgumentException deep inside a command; null when there is none.</summary>
    private static (string Option, string Value)? EmptyValue(ParseResult parse)
    {
        foreach (var child in parse.CommandResult.Children)
            if (child is OptionResult { Option.ValueType: var type } option && type == typeof(string)
                && option.Tokens.FirstOrDefault(t => string.IsNullOrWhiteSpace(t.Value)) is { } blank)
                return (option.Option.Name, blank.Value);
        return null;
    }
}
