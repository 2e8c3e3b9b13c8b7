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

    /// <summary>The HuggingFace architecture (built-in class) of the task's model.</summary>
    public static string Architecture(this FineTuningTask task) => task switch
    {
        FineTuningTask.Classification => "BertForSequenceClassification",
        FineTuningTask.TokenClassification => "BertForTokenClassification",
        FineTuningTask.Span => "BertForQuestionAnswering",
        _ => throw new ArgumentOutOfRangeException(nameof(task), task, "unknown task"),
    };

    /// <summary>The configuration of the task's model over an encoder of <paramref name="encoder"/>'s sizes
    /// (a pretrained checkpoint's config): the task's heads, <paramref name="labels"/> classes (any number;
    /// ignored for span), named after the architecture.</summary>
    /// <exception cref="ArgumentException">A label count out of range or a bad size, naming the field.</exception>
    public static BertConfig ModelConfig(this FineTuningTask task, BertConfig encoder, int labels)
    {
        ArgumentNullException.ThrowIfNull(encoder);
        var c = encoder with
        {
            Name = task.Architecture(),
            ClassificationLabels = task == FineTuningTask.Classification ? labels : 0,
            TokenClassificationLabels = task == FineTuningTask.TokenClassification ? labels : 0,
        };
        if (task != FineTuningTask.Span && labels < 1)
            throw new ArgumentOutOfRangeException(nameof(labels), labels, $"a {task.CliName()} model needs at least one class");
        return BertModels.WithHeads(c, task.Architecture());
    }

    /// <summary>Builds the task's model (<see cref="ModelConfig"/>) on <paramref name="backend"/>.</summary>
    public static BertModelBase CreateModel(this FineTuningTask task, BertConfig encoder, int labels, IBackend backend,
        int maxBatch, int maxSeq) =>
        BertModels.Create(task.ModelConfig(encoder, labels), backend, maxBatch, maxSeq, 0);
}
