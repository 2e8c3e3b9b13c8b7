using Bert.Runtime;

namespace Bert.Native;

// Padded logits (CudaBackendOptions.LogitsPadding, issue 12): the MLM decoder's GEMM over a vocabulary padded to a
// multiple of 64 columns, inside the GEMM only.
//
// Linear with outputStride > O runs as a dense Linear of stride outputs on zero-padded copies of the weight
// [stride, K] (in the GEMM's type) and the bias [stride], so its padding columns come out 0 (every activation maps
// 0 to 0); the copies are refreshed per call (a device copy of the weight: ~47 MB at BERT's sizes in bf16), since
// the weights change every step. SoftmaxCrossEntropy skips the padding columns and zeroes their gradient;
// LinearBackward reads the O real columns of dOutput at the padded stride (dWeight and dBias keep O rows).
public sealed partial class CudaBackend
{
    private ulong _padding;        // [stride·K] weight copy (GEMM type), then F32 bias [stride], then BF16 bias [stride]
    private long _paddingBytes;

    /// <inheritdoc/>
    public int LogitsStride(int classes)
    {
        OpChecks.LogitsStride(classes);
        int pad = _options.LogitsPadding;
        if (pad <= 0 || ComputeType != DType.BF16) return classes;
        return (int)((classes + (long)pad - 1) / pad * pad);
    }

    /// <summary><see cref="Linear"/> with output rows <paramref name="stride"/> apart (checked by the caller).</summary>
    private void LinearPadded(TensorRef output, TensorRef preActivation, TensorRef input, TensorRef weight, TensorRef bias,
        int rows, int inFeatures, int outFeatures, Activation activation, int stride)
    {
        var gemmType = GemmType(input, weight, output);
        long k = inFeatures, o = outFeatures, s = stride, size = gemmType.Size();
        long weightBytes = Align256(s * k * size), biasBytes = Align256(s * 4);
        EnsurePadding(weightBytes + 2 * biasBytes);

        // weight [O, K] → [stride, K], rows O.. zero; from its bf16 shadow where the GEMM is bf16.
        var padded = new TensorRef(_padding, s * k, gemmType);
        var rowsPart = padded.Slice(0, o * k);
        if (weight.DType == gemmType) _api.Copy(rowsPart.Address, weight.Address, o * k * size);
        else if (gemmType == DType.BF16 && TryShadow(weight, out var shadow)) _api.Copy(rowsPart.Address, shadow.Address, o * k * size);
        else ConvertInto(rowsPart, weight.Slice(0, o * k));
        _api.Memset(padded.Address + (ulong)(o * k * size), 0, (s - o) * k * size);

        var paddedBias = TensorRef.Null;
        var paddedBias16 = TensorRef.Null;
        if (!bias.IsNull)
        {
            paddedBias = new TensorRef(_padding + (ulong)weightBytes, s, DType.F32);
            _api.Copy(paddedBias.Address, bias.Address, o * 4);
            _api.Memset(paddedBias.Address + (ulong)(o * 4), 0, (s - o) * 4);
            if (gemmType == DType.BF16 && _options.UseCublasLt && _api.SupportsLt)
            {
                // cuBLASLt's bf16 BIAS epilogue reads a bf16 bias (as from a parameter's shadow).
                paddedBias16 = new TensorRef(_padding + (ulong)(weightBytes + biasBytes), s, DType.BF16);
                ConvertInto(paddedBias16, paddedBias);
            }
        }

        // The dense Linear of stride outputs over the padded copies: the padding columns come out act(0) = 0.
        if (!paddedBias16.IsNull && TryLinearLt(output, preActivation, input, padded, paddedBias16, rows, inFeatures, stride, activation))
            return;
        LinearCore(output, preActivation, input, padded, paddedBias, rows, inFeatures, stride, activation);
    }

    private static long Align256(long bytes) => (bytes + 255) / 256 * 256;

    /// <summary>At least <paramref name="bytes"/> of padding scratch, allocated on the first padded call (the first
    /// step) and kept; a larger request waits for queued work before freeing the old one.</summary>
    private void EnsurePadding(long bytes)
    {
        if (bytes <= _paddingBytes) return;
        if (_padding != 0)
        {
            _api.Synchronize();
            _api.Free(_padding);
            _padding = 0;
            _paddingBytes = 0;
        }
        _padding = _api.Allocate(bytes, "logits-padding");
        _paddingBytes = bytes;
    }
}
