using System.CommandLine;
using System.Globalization;
using Bert.Runtime;
using Bert.Runtime.Data;
using Bert.Runtime.IO;

namespace Bert.Cli.Commands;

/// <summary>`bert import --hf DIR --out DIR`: a HuggingFace BERT directory (config.json +
/// model.safetensors) as a weights-only checkpoint of a BertForPreTraining with the same sizes.
/// Heads the source lacks (a BertModel has no MLM/NSP heads) are initialized as in pretraining.</summary>
public static class ImportCommand
{
    public static Command Create()
    {
        var hf = new Option<string>("--hf") { Description = "HuggingFace model directory (config.json + model.safetensors), a hub cache repository (models--org--name), or a model id found offline in the HuggingFace cache (HF_HOME)", Required = true };
        var output = new Option<string>("--out") { Description = "checkpoint root to create (receives step-000000/ and latest)", Required = true };
        var seed = new Option<ulong>("--seed") { Description = "seed for initializing tensors the source lacks", DefaultValueFactory = _ => 0UL };
        var strict = new Option<bool>("--strict") { Description = "fail unless every tensor matches exactly (nothing missing or unexpected)" };
        var cmd = new Command("import", "convert a HuggingFace BERT model directory into a checkpoint") { hf, output, seed, strict };
        cmd.SetAction(r => Run(r.GetValue(hf)!, r.GetValue(output)!, r.GetValue(seed), r.GetValue(strict), Console.Out));
        return cmd;
    }

    internal static int Run(string hfDirectory, string outputRoot, ulong seed, bool strict, TextWriter log)
    {
        try
        {
            // A hub cache repository or a model id found offline in the HuggingFace cache gives its snapshot.
            hfDirectory = HfCache.Resolve(hfDirectory) ?? hfDirectory;
        }
        catch (DirectoryNotFoundException e)
        {
            throw new UserException($"--hf {hfDirectory}: {e.Message}", ExitCodes.BadInput);
        }
        OutputPaths.RefuseOverlap("--out", outputRoot, ("--hf", hfDirectory));
        try
        {
            string configPath = Path.Combine(hfDirectory, ConfigJson.FileName);
            if (!File.Exists(configPath))
                throw new UserException($"{configPath}: not found (a HuggingFace model directory has config.json beside model.safetensors)", ExitCodes.BadInput);
            var source = ConfigJson.Read(configPath).Model;
            var config = source with
            {
                HasPooler = true,
                HasMlmHead = true,
                HasNspHead = true,
                ClassificationLabels = 0,
                TokenClassificationLabels = 0,
                HasSpanHead = false,
            };
            var table = ParameterLayout.ForPretraining(config);
            var parameters = new float[ParameterLayout.Total(table)];
            BertModelBase.InitializeHost(parameters, table, config.InitializerRange, seed);

            var report = HfInterop.Import(hfDirectory, table, parameters);
            log.WriteLine(report.Describe());
            if (report.Mismatched.Any())
                throw new UserException($"{report.File}: cannot import: tensors disagree with the config's shapes ({configPath}):\n"
                    + report.DescribeIssues().TrimEnd('\n'), ExitCodes.BadInput);
            if (strict && !report.IsExact)
                throw new UserException($"{report.File}: --strict: the file does not match BertForPreTraining exactly:\n"
                    + report.DescribeIssues().TrimEnd('\n'), ExitCodes.BadInput);
            if (CheckpointReader.ListComplete(PhysicalFileSystem.Instance, Path.GetFullPath(outputRoot)).Count > 0)
                throw new UserException($"--out: '{outputRoot}' already holds checkpoints; choose an empty directory", ExitCodes.Usage);

            var extra = new Dictionary<string, ReadOnlyMemory<byte>>();
            string vocab = Path.Combine(hfDirectory, "vocab.txt");
            if (File.Exists(vocab))
            {
                // A vocabulary without [PAD] [UNK] [CLS] [SEP] [MASK], or with more tokens than the
                // embeddings have rows, would make a checkpoint nothing can tokenize for: refused here.
                var v = Vocabulary.Load(vocab);
                if (v.Count > config.VocabSize)
                    throw new UserException($"{vocab}: {v.Count} tokens, more than the {config.VocabSize} embedding rows (vocab_size in {configPath})", ExitCodes.BadInput);
                extra["vocab.txt"] = File.ReadAllBytes(vocab);
            }
            var writer = new CheckpointWriter(outputRoot, new CheckpointWriterOptions { KeepLast = 1 });
            string written = writer.Save(new CheckpointContent
            {
                Step = 0,
                Config = config,
                Table = table,
                Parameters = parameters,
                ExtraFiles = extra,
                Metadata = new Dictionary<string, string>
                {
                    ["source"] = Path.GetFullPath(hfDirectory),
                    ["init_seed"] = seed.ToString(CultureInfo.InvariantCulture),
                },
            });
            log.WriteLine($"wrote {written} ({table.Count} tensors, {parameters.LongLength} parameters" +
                (report.Missing.Any() ? $"; {report.Missing.Count()} missing tensors initialized with seed {seed}" : "") + ")");
            return ExitCodes.Ok;
        }
        catch (Exception e) when (CliErrors.Translate(e) is { } user)
        {
            throw user;
        }
    }
}
