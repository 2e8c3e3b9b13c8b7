namespace Bert.Runtime.FineTuning;

/// <summary>The three fine-tuning heads of BERT.</summary>
public enum FineTuningTask
{
    /// <summary>One class per sequence (or sequence pair), from the pooled [CLS] output.</summary>
    Classification = 0,
    /// <summary>One tag per word (NER, part of speech), from its first word piece.</summary>
    TokenClassification = 1,
    /// <summary>Extractive question answering: the start and end of the answer in the context.</summary>
    Span = 2,
}

public static class FineTuningTasks
{
    /// <summary>The command-line name: classify, tokens, span.</summary>
    public static string CliName(this FineTuningTask task) => task switch
    {
        FineTuningTask.Classification => "classify",
        FineTuningTask.TokenClassification => "tokens",
        FineTuningTask.Span => "span",
        _ => throw new ArgumentOutOfRangeException(nameof(task), task, "unknown task"),
    };

    public static bool TryParse(string name, out FineTuningTask task)
    {
        switch (name)
        {
            case "classify": task = FineTuningTask.Classification; return true;
            case "tokens": task = FineTuningTask.TokenClassification; return true;
            case "span": task = FineTuningTask.Span; return true;
            default: task = default; return false;
        }
    }
}
