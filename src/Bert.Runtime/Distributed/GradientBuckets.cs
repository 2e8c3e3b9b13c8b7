using System.Globalization;

namespace Bert.Runtime.Distributed;

/// <summary>
/// The gradient all-reduce of data-parallel training, bucketed by encoder layer and overlapped with the backward (as
/// PyTorch DDP's buckets): during the last micro-batch of a step, each layer's gradients are handed to
/// <see cref="ICommunicator.AllReduceSumStart"/> as soon as the generated backward reports them final
/// (<see cref="BertModelBase.LayerGradientsDone"/>), so layer l's all-reduce runs while layers l − 1 … 0 compute; the
/// rest (embeddings, pooler, heads: the word embeddings collect gradient from the MLM decoder and from the embedding
/// backward, which runs last) is reduced after the backward, and <see cref="Finish"/> completes them all. Each element
/// is summed over the same ranks exactly once, as by one all-reduce of the whole buffer.
///
/// Layer l's bucket is the slices of the flat gradient buffer holding bert.encoder.layer.{l}.*, adjacent tensors
/// merged: the layout rule puts every weight-decayed tensor before every other, so a layer is two slices (its Linear
/// weights, 99.9% of it, and its biases and LayerNorm parameters).
/// </summary>
public sealed class GradientBuckets : ILayerGradientsListener
{
    private readonly BertModelBase _model;
    private readonly ICommunicator _comm;
    private readonly (long Offset, long Length)[][] _layers;
    private readonly (long Offset, long Length)[] _rest;
    private readonly string[] _layerNames; // formatted once: naming a per-step collective allocates nothing
    private long _step = -1;

    private GradientBuckets(BertModelBase model, ICommunicator comm, (long, long)[][] layers, (long, long)[] rest)
    {
        _model = model;
        _comm = comm;
        _layers = layers;
        _rest = rest;
        _layerNames = new string[layers.Length];
        for (int l = 0; l < layers.Length; l++)
            _layerNames[l] = string.Create(CultureInfo.InvariantCulture, $"the gradient all-reduce of bert.encoder.layer.{l}");
    }

    /// <summary>Layer l's slices (offset, length) of the flat parameter (and gradient) buffer, in buffer order.</summary>
    public IReadOnlyList<IReadOnlyList<(long Offset, long Length)>> Layers => _layers;

    /// <summary>The slices outside every layer (embeddings, pooler and heads), in buffer order.</summary>
    public IReadOnlyList<(long Offset, long Length)> Rest => _rest;

    /// <summary>Buckets for <paramref name="model"/>'s gradients over <paramref name="communicator"/>, or null for a
    /// model without encoder layers (then the whole buffer is reduced at once).</summary>
    public static GradientBuckets? TryCreate(BertModelBase model, ICommunicator communicator)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(communicator);
        int layers = model.Config.Layers;
        if (layers == 0) return null;
        var runs = new List<(long Offset, long Length)>[layers + 1]; // [layers]: the rest
        for (int i = 0; i <= layers; i++) runs[i] = [];
        foreach (var p in model.ParameterTable.OrderBy(p => p.Offset))
        {
            if (p.Count == 0) continue;
            int l = LayerOf(p.Name) is int k && k < layers ? k : layers;
            var list = runs[l];
            if (list.Count > 0 && list[^1].Offset + list[^1].Length == p.Offset)
                list[^1] = (list[^1].Offset, list[^1].Length + p.Count);
            else list.Add((p.Offset, p.Count));
        }
        return new GradientBuckets(model, communicator, runs[..layers].Select(r => r.ToArray()).ToArray(), runs[layers].ToArray());
    }

    private static int? LayerOf(string name)
    {
        const string prefix = "bert.encoder.layer.";
        if (!name.StartsWith(prefix, StringComparison.Ordinal)) return null;
        int dot = name.IndexOf('.', prefix.Length);
        return dot > prefix.Length && int.TryParse(name.AsSpan(prefix.Length, dot - prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out int l)
            ? l : null;
    }

    /// <summary>The next backward of the model is step <paramref name="step"/>'s last: start each layer's all-reduce
    /// as it finishes.</summary>
    public void Arm(long step)
    {
        _step = step;
        _model.LayerGradientsListener = this;
    }

    void ILayerGradientsListener.LayerGradientsDone(int layer)
    {
        if (_step < 0 || (uint)layer >= (uint)_layers.Length) return;
        foreach (var (offset, length) in _layers[layer])
            _comm.AllReduceSumStart(_model.Gradients.View.Slice(offset, length), new Collective(_layerNames[layer], _step));
    }

    /// <summary>After the armed backward: reduces the gradients outside the layers and completes every all-reduce, so
    /// the whole buffer holds the sums over the ranks.</summary>
    public void Finish()
    {
        if (_step < 0) throw new InvalidOperationException("GradientBuckets.Finish without Arm");
        _model.LayerGradientsListener = null;
        long step = _step;
        _step = -1;
        foreach (var (offset, length) in _rest)
            _comm.AllReduceSumStart(_model.Gradients.View.Slice(offset, length), new Collective("the gradient all-reduce of the embeddings and heads", step));
        _comm.CompleteStarted(new Collective("the gradient all-reduce", step));
    }

    /// <summary>Stops listening without reducing (the backward failed).</summary>
    public void Disarm()
    {
        _model.LayerGradientsListener = null;
        _step = -1;
    }
}
