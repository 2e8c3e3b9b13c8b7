using System.CommandLine;
using System.CommandLine.Parsing;
using System.Text.Json;
using System.Text.Json.Nodes;
using Bert.Runtime.IO;

namespace Bert.Cli;

/// <summary>
/// Run configuration files: `bert pretrain --config run.json` (and finetune) reads a JSON object whose keys are
/// the command's option names ("steps", "lr", "micro-batch", "data": [..], "resume": true), and options given
/// on the command line override it. Every run records its resolved configuration (every option's effective
/// value, defaults included) as OUT/run-config.json, which is itself a valid --config file.
/// </summary>
internal static class RunConfig
{
    public const string FileName = "run-config.json";
    private static readonly string[] Commands = ["pretrain", "finetune"];

    // A NaN or infinite number (refused later by the command, with its own message) must not break the recording.
    private static readonly JsonSerializerOptions Literals = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    /// <summary>The effective options of the command being run (set by <see cref="Program.Run"/>), written by the command
    /// into its run directory; null when the command was not started from the command line.</summary>
    public static JsonObject? Current { get; set; }

    /// <summary>Replaces `--config FILE` by the file's options, inserted before the command line's own (so those win).</summary>
    /// <exception cref="UserException">An unreadable file, a key that is no option of the command, a value of the wrong kind.</exception>
    public static string[] Expand(string[] args, RootCommand root)
    {
        if (args.Length < 2 || !Commands.Contains(args[0])) return args;
        int at = Array.IndexOf(args, "--config");
        if (at < 0) return args;
        if (at + 1 >= args.Length) throw new UserException("--config: expects a JSON file");
        string path = args[at + 1];
        if (!File.Exists(path)) throw new UserException($"--config {path}: file not found", ExitCodes.BadInput);
        var command = root.Subcommands.Single(c => c.Name == args[0]);
        var rest = args.Where((_, i) => i != at && i != at + 1).ToList();
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new UserException($"{path}: not valid JSON: {e.Message}", ExitCodes.BadInput);
        }
        if (node is not JsonObject obj) throw new UserException($"{path}: must be a JSON object of option names and values", ExitCodes.BadInput);
        var inserted = new List<string>();
        foreach (var (rawKey, value) in obj)
        {
            string name = rawKey.StartsWith("--", StringComparison.Ordinal) ? rawKey : "--" + rawKey;
            if (name == "--config") throw new UserException($"{path}: key '{rawKey}': a config file cannot name another", ExitCodes.BadInput);
            var option = command.Options.FirstOrDefault(o => o.Name == name || o.Aliases.Contains(name))
                ?? throw new UserException($"{path}: key '{rawKey}': bert {command.Name} has no option {name}", ExitCodes.BadInput);
            if (rest.Contains(option.Name) || option.Aliases.Any(rest.Contains) || value is null) continue;   // the command line wins
            inserted.Add(option.Name);
            switch (value)
            {
                case JsonArray array:
                    foreach (var item in array) inserted.Add(Scalar(item, path, rawKey));
                    break;
                default:
                    inserted.Add(Scalar(value, path, rawKey));
                    break;
            }
        }
        return [rest[0], .. inserted, .. rest.Skip(1)];
    }

    private static string Scalar(JsonNode? value, string path, string key) => value switch
    {
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        JsonValue v when v.TryGetValue<bool>(out var b) => b ? "true" : "false",
        JsonValue v when v.GetValueKind() == JsonValueKind.Number => v.ToJsonString(),
        _ => throw new UserException($"{path}: key '{key}': {value?.ToJsonString() ?? "null"} is not a string, number, boolean or list of them", ExitCodes.BadInput),
    };

    /// <summary>Every option of the parsed command with its effective value (defaults included).</summary>
    public static JsonObject Effective(ParseResult parse)
    {
        var result = new JsonObject();
        foreach (var option in parse.CommandResult.Command.Options)
        {
            if (option.Name is "--help" or "-h" or "--version" || option.Name.StartsWith("-?", StringComparison.Ordinal)) continue;
            var r = parse.GetResult(option);
            object? value = r is OptionResult o ? o.GetValueOrDefault<object?>() : null;
            if (value is null) continue;
            result[option.Name.TrimStart('-')] = JsonSerializer.SerializeToNode(value, Literals);
        }
        return result;
    }

    /// <summary>Writes <see cref="Current"/> (with "out" set to the directory actually used) as OUT/run-config.json, atomically.</summary>
    public static void WriteTo(string outputDirectory)
    {
        if (Current is null) return;
        var config = (JsonObject)Current.DeepClone();
        config["out"] = outputDirectory;
        byte[] json = System.Text.Encoding.UTF8.GetBytes(config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        Directory.CreateDirectory(outputDirectory);
        AtomicFile.Write(PhysicalFileSystem.Instance, Path.Combine(outputDirectory, FileName), s => s.Write(json));
    }
}
