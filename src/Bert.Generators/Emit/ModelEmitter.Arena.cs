using System.Collections.Generic;
using Bert.Generators.Model;

namespace Bert.Generators.Emit;

internal static partial class ModelEmitter
{
    private sealed partial class Emitter
    {
        /// <summary>An activation region: a field of ArenaLayout holding its offset, the size expression
        /// over the local sizes of the layout's constructor, and its shape for the comment.</summary>
        private sealed record Region(string Field, string Size, string Comment);

        /// <summary>Elements each activation's offset is a multiple of.</summary>
        public const int ArenaAlignment = 64;

        private bool PooledLoss => _s.Nsp || _s.Classification is not null;

        // One encoder layer's saved activations, relative to the layer's start (compute arena).
        private static readonly Region[] LayerRegions =
        [
            new("Qkv", "N * 3 * H", "[N,3H] query|key|value per token"),
            new("AttentionSaved", "attentionSaved", "[AttentionSavedLength] what attention saves for its backward: the probabilities [B,NH,S,S] or a fused kernel's row statistics"),
            new("Context", "N * H", "[N,H] attention context, heads concatenated"),
            new("AttentionSum", "N * H", "[N,H] input + attention branch"),
            new("AttentionOutput", "N * H", "[N,H] its LayerNorm: the feed-forward input"),
            new("FfnPre", "N * I", "[N,I] intermediate before the activation"),
            new("FfnAct", "N * I", "[N,I] intermediate after the activation"),
            new("FfnSum", "N * H", "[N,H] attention output + feed-forward branch"),
            new("Output", "N * H", "[N,H] its LayerNorm: the layer output"),
        ];

        // The same layer's F32 statistics.
        private static readonly Region[] LayerRegionsF32 =
        [
            new("AttentionMean", "N", "[N]"),
            new("AttentionRstd", "N", "[N]"),
            new("FfnMean", "N", "[N]"),
            new("FfnRstd", "N", "[N]"),
        ];

        private List<Region> ComputeRegions(out int layersAt)
        {
            var r = new List<Region>
            {
                new("EmbeddingSum", "N * H", "[N,H] word + position + segment embeddings"),
                new("EmbeddingOutput", "N * H", "[N,H] their LayerNorm (and dropout): layer 0's input"),
            };
            layersAt = r.Count;
            r.Add(new("Branch", "N * H", "[N,H] a sub-layer's output before its residual add (consumed at once, not kept)"));
            if (_s.Mlm is not null)
            {
                r.Add(new("MlmInput", "BP * H", "[B·P,H] hidden states at the masked positions"));
                r.Add(new("MlmPre", "BP * MT", "[B·P,MT] transform before the activation"));
                r.Add(new("MlmAct", "BP * MT", "[B·P,MT] transform after the activation"));
                r.Add(new("MlmNorm", "BP * MT", "[B·P,MT] its LayerNorm: the decoder input"));
                // In the compute type, so a bf16 GPU writes bf16 logits and the loss turns them into their bf16
                // gradient in place: the decoder's backward GEMM reads them without a conversion.
                r.Add(new("MlmLogits", "BP * logitsStride", "[B·P,V] masked-LM logits, then their gradient; rows LogitsStride apart"));
            }
            if (_s.Pooler)
            {
                r.Add(new("PoolerInput", "B * H", "[B,H] hidden state of [CLS]"));
                r.Add(new("PoolerPre", "B * H", "[B,H] pooler dense before tanh"));
                r.Add(new("Pooled", "B * H", "[B,H] pooled output"));
            }
            if (_s.Classification is not null) r.Add(new("ClassifierInput", "B * H", "[B,H] pooled output after dropout"));
            if (_s.TokenClassification is not null) r.Add(new("ClassifierInput", "N * H", "[N,H] sequence output after dropout"));
            r.Add(new("DHidden", "N * H", "[N,H] gradient of the residual stream, walking down the layers"));
            r.Add(new("DBranch", "N * H", "[N,H] gradient of a sub-layer's branch"));
            r.Add(new("DContext", "N * H", "[N,H] gradient of the attention context"));
            r.Add(new("DQkv", "N * 3 * H", "[N,3H] gradient of query|key|value"));
            r.Add(new("DFfn", "N * I", "[N,I] gradient of the intermediate activation"));
            if (_s.Mlm is not null)
            {
                r.Add(new("DMlmNorm", "BP * MT", "[B·P,MT] gradient of the decoder input"));
                r.Add(new("DMlmAct", "BP * MT", "[B·P,MT] gradient of the transform"));
                r.Add(new("DMlmInput", "BP * H", "[B·P,H] gradient of the gathered hidden states"));
            }
            if (_s.Pooler && PooledLoss)
            {
                r.Add(new("DPooled", "B * H", "[B,H] gradient of the pooled output"));
                r.Add(new("DPoolerInput", "B * H", "[B,H] gradient of the [CLS] hidden state"));
            }
            return r;
        }

        private List<Region> F32Regions(out int layersAt)
        {
            var r = new List<Region>
            {
                new("EmbeddingMean", "N", "[N] embedding LayerNorm mean"),
                new("EmbeddingRstd", "N", "[N] and reciprocal standard deviation"),
                new("EmbeddingScratch", "N * H", "[N,H] gradient of the embedding sum (backward scratch)"),
            };
            layersAt = r.Count;
            if (_s.Mlm is not null)
            {
                r.Add(new("MlmMean", "BP", "[B·P] MLM transform LayerNorm mean"));
                r.Add(new("MlmRstd", "BP", "[B·P] and reciprocal standard deviation"));
            }
            if (_s.Nsp) r.Add(new("NspLogits", "B * 2", "[B,2] next-sentence logits, then their gradient"));
            if (_s.Classification is not null) r.Add(new("ClassifierLogits", "B * C", "[B,C] classification logits, then their gradient"));
            if (_s.TokenClassification is not null) r.Add(new("ClassifierLogits", "N * C", "[N,C] token-classification logits, then their gradient"));
            if (_s.Span) r.Add(new("SpanLogits", "2 * N", "[2,N] start logits [B,S] then end logits [B,S]"));
            return r;
        }

        private void Arena()
        {
            var compute = ComputeRegions(out int layersAt);
            var f32 = F32Regions(out int layersAtF32);

            _w.Line("/// <summary>Elements of the compute arena and of the F32 arena that a micro-batch of <paramref name=\"batch\"/>");
            _w.Line("/// sequences of <paramref name=\"seq\"/> tokens with <paramref name=\"predictions\"/> masked positions each needs,");
            _w.Line("/// at the sizes of <paramref name=\"config\"/>, on <paramref name=\"backend\"/> (whose attention decides what each layer");
            _w.Line("/// saves for its backward: <see cref=\"" + Runtime + "IBackend.PlanAttention\"/>).</summary>");
            using (Method("public static (long Compute, long F32) PlanArena(" + Runtime + "IBackend backend, " + Runtime + "BertConfig config, int batch, int seq, int predictions)"))
            {
                _w.Line("global::System.ArgumentNullException.ThrowIfNull(backend);");
                _w.Line("var c = ResolveConfig(config);");
                _w.Line("var a = new ArenaLayout(c, batch, seq, predictions, backend.PlanAttention(batch, seq, c.Heads, c.HeadDim).SavedLength" +
                        (_s.Mlm is not null ? ", backend.LogitsStride(c.VocabSize));" : ");"));
                _w.Line("return (a.ComputeLength, a.F32Length);");
            }
            _w.Line();

            _w.Line("/// <summary>");
            _w.Line("/// Where each activation of one micro-batch (B, S, P) lives: element offsets in the compute arena");
            _w.Line("/// (the backend's compute type: saved activations, GEMM operands, activation-gradient scratch) and");
            _w.Line("/// in the F32 arena (LayerNorm statistics, logits), each aligned to " + I(ArenaAlignment) + " elements. Straight-line");
            _w.Line("/// arithmetic, no allocation. Every size grows with B, S and P, so arenas planned for the maxima");
            _w.Line("/// hold any smaller batch.");
            _w.Line("/// </summary>");
            _w.Line(GeneratedCode);
            using (_w.Block("private readonly struct ArenaLayout"))
            {
                _w.Line("public readonly int Batch, Seq, Tokens;");
                _w.Line("public readonly long AttentionSavedLength;  // elements of each layer's AttentionSaved (IBackend.PlanAttention)");
                if (_s.Mlm is not null)
                    _w.Line("public readonly int LogitsStride;           // row stride of MlmLogits: V, or V padded inside the GEMM (IBackend.LogitsStride)");
                _w.Line("// ---- compute arena ----");
                for (int i = 0; i < compute.Count; i++)
                {
                    if (i == layersAt)
                    {
                        _w.Line(Field("Layer0, LayerStride") + "// layer l's saved activations start at Layer0 + l·LayerStride:");
                        foreach (var r in LayerRegions) _w.Line(Field(r.Field) + "//   " + r.Comment);
                    }
                    _w.Line(Field(compute[i].Field) + "// " + compute[i].Comment);
                }
                _w.Line("public readonly long ComputeLength;");
                _w.Line("// ---- F32 arena ----");
                for (int i = 0; i < f32.Count; i++)
                {
                    if (i == layersAtF32) LayerF32Fields();
                    _w.Line(Field(f32[i].Field) + "// " + f32[i].Comment);
                }
                if (layersAtF32 == f32.Count) LayerF32Fields();
                _w.Line("public readonly long F32Length;");
                _w.Line();

                using (_w.Block("public ArenaLayout(" + Runtime + "BertConfig config, int batch, int seq, int predictions, long attentionSaved" +
                                (_s.Mlm is not null ? ", int logitsStride)" : ")")))
                {
                    Sizes("config", "long");
                    var sizes = "long B = batch, S = seq, N = B * S";
                    if (_s.Mlm is not null) sizes += ", BP = B * predictions";
                    _w.Line(sizes + ";");
                    _w.Line("Batch = batch;");
                    _w.Line("Seq = seq;");
                    _w.Line("Tokens = batch * seq;");
                    _w.Line("AttentionSavedLength = attentionSaved;");
                    if (_s.Mlm is not null) _w.Line("LogitsStride = logitsStride;");
                    _w.Line("long c = 0, f = 0, l = 0;");
                    for (int i = 0; i < compute.Count; i++)
                    {
                        if (i == layersAt)
                        {
                            _w.Line("// one layer, relative to its start");
                            foreach (var r in LayerRegions) _w.Line(r.Field + " = l; l = Up(l + " + r.Size + ");");
                            _w.Line("LayerStride = l;");
                            _w.Line("Layer0 = c; c += L * LayerStride;");
                        }
                        _w.Line(compute[i].Field + " = c; c = Up(c + " + compute[i].Size + ");");
                    }
                    _w.Line("ComputeLength = c;");
                    for (int i = 0; i <= f32.Count; i++)
                    {
                        if (i == layersAtF32)
                        {
                            _w.Line("l = 0;");
                            foreach (var r in LayerRegionsF32) _w.Line(r.Field + " = l; l = Up(l + " + r.Size + ");");
                            _w.Line("LayerStrideF32 = l;");
                            _w.Line("Layer0F32 = f; f += L * LayerStrideF32;");
                        }
                        if (i < f32.Count) _w.Line(f32[i].Field + " = f; f = Up(f + " + f32[i].Size + ");");
                    }
                    _w.Line("F32Length = f;");
                }
                _w.Line();
                _w.Line("/// <summary>Rounds up to a multiple of " + I(ArenaAlignment) + " elements, so every tensor starts on a 256-byte (F32) or");
                _w.Line("/// 128-byte (BF16) boundary, as vectorized kernels and GEMMs want.</summary>");
                _w.Line("private static long Up(long elements) => (elements + " + I(ArenaAlignment - 1) + ") & ~" + I(ArenaAlignment - 1) + "L;");
            }
            _w.Line();

            var t = TensorRef;
            _w.Line("/// <summary>The saved activations of one encoder layer (views into the arenas).</summary>");
            _w.Line(GeneratedCode);
            _w.Line("private readonly record struct LayerActivations(");
            _w.Line("    " + t + " Input,            // [N,H] the previous layer's output (the embeddings for layer 0)");
            _w.Line("    " + t + " Qkv,              // [N,3H]");
            _w.Line("    " + t + " AttentionSaved,   // [AttentionSavedLength]: the probabilities [B,NH,S,S] or a fused kernel's statistics");
            _w.Line("    " + t + " Context,          // [N,H]");
            _w.Line("    " + t + " AttentionSum,     // [N,H]");
            _w.Line("    " + t + " AttentionMean,    // F32[N]");
            _w.Line("    " + t + " AttentionRstd,    // F32[N]");
            _w.Line("    " + t + " AttentionOutput,  // [N,H]");
            _w.Line("    " + t + " FfnPre,           // [N,I]");
            _w.Line("    " + t + " FfnAct,           // [N,I]");
            _w.Line("    " + t + " FfnSum,           // [N,H]");
            _w.Line("    " + t + " FfnMean,          // F32[N]");
            _w.Line("    " + t + " FfnRstd,          // F32[N]");
            _w.Line("    " + t + " Output);          // [N,H]");
            _w.Line();
            _w.Line("/// <summary>Views of the saved activations of encoder layer <paramref name=\"l\"/> in layout <paramref name=\"a\"/>.</summary>");
            using (Method("private LayerActivations Layer(in ArenaLayout a, int l)"))
            {
                _w.Line("int H = Config.Hidden, NH = Config.Heads, I = Config.Intermediate;");
                _w.Line("long n = a.Tokens, c = a.Layer0 + l * a.LayerStride, f = a.Layer0F32 + l * a.LayerStrideF32;");
                _w.Line("return new LayerActivations(");
                _w.Line("    Input: l == 0 ? A(a.EmbeddingOutput, n, H) : A(c - a.LayerStride + a.Output, n, H),");
                _w.Line("    Qkv: A(c + a.Qkv, n, 3 * H),");
                _w.Line("    AttentionSaved: A(c + a.AttentionSaved, a.AttentionSavedLength, 1),");
                _w.Line("    Context: A(c + a.Context, n, H),");
                _w.Line("    AttentionSum: A(c + a.AttentionSum, n, H),");
                _w.Line("    AttentionMean: F(f + a.AttentionMean, n, 1),");
                _w.Line("    AttentionRstd: F(f + a.AttentionRstd, n, 1),");
                _w.Line("    AttentionOutput: A(c + a.AttentionOutput, n, H),");
                _w.Line("    FfnPre: A(c + a.FfnPre, n, I),");
                _w.Line("    FfnAct: A(c + a.FfnAct, n, I),");
                _w.Line("    FfnSum: A(c + a.FfnSum, n, H),");
                _w.Line("    FfnMean: F(f + a.FfnMean, n, 1),");
                _w.Line("    FfnRstd: F(f + a.FfnRstd, n, 1),");
                _w.Line("    Output: A(c + a.Output, n, H));");
            }
        }

        private static string Field(string name) => ("public readonly long " + name + ";").PadRight(44);

        private void LayerF32Fields()
        {
            _w.Line(Field("Layer0F32, LayerStrideF32") + "// layer l's statistics start at Layer0F32 + l·LayerStrideF32:");
            foreach (var r in LayerRegionsF32) _w.Line(Field(r.Field) + "//   " + r.Comment);
        }
    }
}
