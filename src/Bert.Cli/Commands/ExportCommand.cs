using System.CommandLine;
using Bert.Runtime;
using Bert.Runtime.IO;

namespace Bert.Cli.Commands;

/// <summary>`bert export --checkpoint DIR --out DIR [--dtype f32|bf16|f16]`: a checkpoint as a
/// HuggingFace model directory (model.safetensors + config.json, plus vocab.txt, tokenizer_config.json and
/// special_tokens_map.json when the checkpoint stores a vocabulary) that transformers' from_pretrained and
/// AutoTokenizer load.</summary>
public static class ExportCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint")
        {
            Description = "a checkpoint directory (step-N holding manifest.json) or a run's checkpoint root (the newest complete one is used)",
            Required = true,
        };
        var output = new Option<string>("--out") { Description = "directory to write the HuggingFace model into", Required = true };
        var dtype = new Option<string>("--dtype") { Description = "stored weight type: f32, bf16 or f16", DefaultValueFactory = _ => "f32" };
        dtype.AcceptOnlyFromAmong("f32", "bf16", "f16");
        var cmd = new Command("export", "write a checkpoint as a HuggingFace BertForPreTraining directory") { checkpoint, output, dtype };
        cmd.SetAction(r => Run(r.GetValue(checkpoint)!, r.GetValue(output)!, ParseDType(r.GetValue(dtype)!), Console.Out));
        return cmd;
    }

    internal static SafetensorsDType ParseDType(string text) => text switch
    {
        "f32" => SafetensorsDType.F32,
        "bf16" => SafetensorsDType.BF16,
        "f16" => SafetensorsDType.F16,
        _ => throw new UserException($"--dtype: '{text}' is not one of f32, bf16, f16"),
    };

    internal static int Run(string checkpointPath, string outputDirectory, SafetensorsDType dtype, TextWriter log)
    {
        OutputPaths.RefuseOverlap("--out", outputDirectory, ("--checkpoint", checkpointPath));
        try
        {
            var checkpoint = CheckpointReader.Open(checkpointPath);
            var config = checkpoint.Config;
            var table = ParameterLayout.For(config);
            var parameters = new float[ParameterLayout.Total(table)];
            checkpoint.ReadParameters(table, parameters);
            var fs = PhysicalFileSystem.Instance;
            try
            {
                Directory.CreateDirectory(outputDirectory);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Creating a directory where none can be made (/proc/x) is ENOENT: a FileNotFoundException, which
                // would read as a missing input (exit 3).
                throw new UserException($"--out {outputDirectory}: cannot create the output directory ({e.Message})", ExitCodes.Io);
            }
            HfInterop.Export(fs, outputDirectory, config, table, parameters, dtype, checkpoint.ConfigFile.LabelNames);
            const string vocab = "vocab.txt";
            if (checkpoint.HasFile(vocab))
            {
                var bytes = checkpoint.ReadFile(vocab);
                // What transformers' tokenizer needs: the special tokens, and no token id beyond the embeddings.
                var tokens = System.Text.Encoding.UTF8.GetString(bytes).Split('\n').Select(t => t.Trim()).Where(t => t.Length > 0);
                var v = Bert.Runtime.Data.Vocabulary.FromTokens(tokens, Path.Combine(checkpoint.Directory, vocab));
                if (v.Count > config.VocabSize)
                    throw new UserException($"{Path.Combine(checkpoint.Directory, vocab)}: {v.Count} tokens, more than the {config.VocabSize} embedding rows (vocab_size in config.json)", ExitCodes.BadInput);
                AtomicFile.Write(fs, Path.Combine(outputDirectory, vocab), s => s.Write(bytes));
                // The casing the checkpoint was trained with: its own tokenizer_config.json, else the vocabulary's.
                bool lowerCase = HfTokenizerFiles.LowerCase(checkpoint.HasFile(HfTokenizerFiles.ConfigFile) ? checkpoint.ReadFile(HfTokenizerFiles.ConfigFile) : null,
                    Path.Combine(checkpoint.Directory, HfTokenizerFiles.ConfigFile), v.Tokens);
                HfTokenizerFiles.Write(fs, outputDirectory, lowerCase, config.MaxPositions);
            }
            log.WriteLine($"exported {checkpoint.Directory} (step {checkpoint.Step}, {table.Count} tensors, " +
                $"{parameters.LongLength} parameters, {dtype}) as {ConfigJson.Architecture(config)} to {Path.GetFullPath(outputDirectory)}");
            return ExitCodes.Ok;
        }
        catch (Exception e) when (CliErrors.Translate(e) is { } user)
        {
            throw user;
        }
    }
}
