namespace Bert.Native;

/// <summary>GPU time of one op name over the calls since the last collection.</summary>
public readonly record struct OpTiming(int Calls, double TotalMilliseconds)
{
    public double MeanMilliseconds => Calls == 0 ? 0 : TotalMilliseconds / Calls;
}

/// <summary>
/// CUDA events around every op of a profiling backend, from a fixed pool so recording allocates nothing.
/// When the pool fills up the recorded pairs are folded into the totals, which waits for the device (the
/// one host sync profiling adds). Ops do not nest, so a scope is one start/end pair.
/// </summary>
internal sealed class OpProfiler : IDisposable
{
    private const int Pairs = 4096;
    private readonly IDeviceApi _api;
    private readonly nint[] _start = new nint[Pairs];
    private readonly nint[] _end = new nint[Pairs];
    private readonly string[] _names = new string[Pairs];
    private readonly Dictionary<string, OpTiming> _totals = new(StringComparer.Ordinal);
    private int _used;

    public OpProfiler(IDeviceApi api)
    {
        _api = api;
        for (int i = 0; i < Pairs; i++)
        {
            _start[i] = api.CreateEvent();
            _end[i] = api.CreateEvent();
        }
    }

    public Scope Begin(string name)
    {
        if (_used == Pairs) Fold();
        int slot = _used++;
        _names[slot] = name;
        _api.RecordEvent(_start[slot]);
        return new Scope(this, slot);
    }

    private void End(int slot) => _api.RecordEvent(_end[slot]);

    private void Fold()
    {
        if (_used == 0) return;
        _api.SynchronizeEvent(_end[_used - 1]);
        for (int i = 0; i < _used; i++)
        {
            float ms = _api.ElapsedMilliseconds(_start[i], _end[i]);
            _totals.TryGetValue(_names[i], out var t);
            _totals[_names[i]] = new OpTiming(t.Calls + 1, t.TotalMilliseconds + ms);
        }
        _used = 0;
    }

    public IReadOnlyDictionary<string, OpTiming> Collect()
    {
        _api.Synchronize();
        Fold();
        var result = new Dictionary<string, OpTiming>(_totals, StringComparer.Ordinal);
        _totals.Clear();
        return result;
    }

    public void Dispose()
    {
        for (int i = 0; i < Pairs; i++)
        {
            _api.DestroyEvent(_start[i]);
            _api.DestroyEvent(_end[i]);
        }
    }

    /// <summary>The running op; disposing it records the end event.</summary>
    public readonly ref struct Scope(OpProfiler? owner, int slot)
    {
        public void Dispose() => owner?.End(slot);
    }
}
