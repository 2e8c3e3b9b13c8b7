using System.Collections.Generic;
using Bert.Generators.Helpers;
using Bert.Generators.Model;

namespace Bert.Generators.Emit;

internal static partial class ModelEmitter
{
    private sealed partial class Emitter
    {
        // Dropout streams: one per dropout site, so no two sites share a mask: 1 the embeddings, 2 + 3l + site
        // for layer l (site 0 attention probs, 1 attention output, 2 feed-forward output), 2 + 3L the classifier.
        private const string EmbeddingDropout = "Dropout(hiddenP, 1)";

        private const string ClassifierDropout = "Dropout(c.ClassifierDropout, (uint)(2 + 3 * L))";

        /// <summary>The loss conditions: a head's loss is computed (and differentiated) when its labels are given.</summary>
        private List<(string Flag, string Condition)> LossFlags()
        {
            var flags = new List<(string, string)>();
            if (_s.Mlm is not null) flags.Add(("mlmLoss", "P > 0 && !batch.MlmLabels.IsNull"));
            if (_s.Nsp) flags.Add(("nspLoss", "!batch.NspLabels.IsNull"));
            if (_s.Classification is not null || _s.TokenClassification is not null) flags.Add(("classifierLoss", "!batch.Labels.IsNull"));
            if (_s.Span) flags.Add(("spanLoss", "!batch.StartPositions.IsNull"));
            return flags;
        }

        private void Locals(bool forward)
        {
            _w.Line("var c = Config;");
            Sizes("c", "int");
            var sizes = "int HD = H / NH, B = batch.Batch, S = batch.Seq, N = B * S";
            if (_s.Mlm is not null) sizes += ", P = batch.Predictions";
            _w.Line(sizes + ";");
            _w.Line("float hiddenP = c.HiddenDropout, attentionP = c.AttentionDropout, eps = c.LayerNormEps;");
            _w.Line("var act = c.HiddenActivation;");
            if (_s.Mlm is { } m)
                _w.Line("var mlmActivation = " + (m.Activation == _s.Encoder.Activation ? "act;  // the transform uses hidden_act, as in transformers" : Runtime + "Activation." + m.Activation + ";  // declared by [MlmHead]"));
            _w.Line("var be = Backend;");
            if (forward && LossFlags().Count > 0)
                _w.Line("float micro = batch.MicroBatchScale > 0f ? batch.MicroBatchScale : 1f;  // 1/accumulation: micro-batches sum to the batch mean");
            _w.Line("var none = " + TensorRef + ".Null;");
            _w.Line("var a = new ArenaLayout(c, B, S, " + (_s.Mlm is not null ? "P" : "0") + ", be.PlanAttention(B, S, NH, HD).SavedLength" +
                    (_s.Mlm is not null ? ", be.LogitsStride(V));" : ");"));
            _w.Line("var w = _p;");
            if (!forward) _w.Line("var g = _g;");
            var acts = new SortedSet<string>();
            if (forward) acts.Add("None");
            if (_s.Pooler && (forward || PooledLoss)) acts.Add("Tanh");
            var consts = new List<string>();
            foreach (var act in acts) consts.Add(act + " = " + Runtime + "Activation." + act);
            if (consts.Count > 0) _w.Line("const " + Runtime + "Activation " + string.Join(", ", consts) + ";");
        }

        private void Forward()
        {
            _w.Line("/// <summary>");
            _w.Line("/// Embeddings, the encoder layers and the heads for one micro-batch. A head's loss (and its gradient,");
            _w.Line("/// in place over its logits) is computed when the batch carries its labels; without them the head only");
            _w.Line("/// produces logits (inference). Fills <see cref=\"" + Runtime + "BertModelBase.Metrics\"/> and the output views.");
            _w.Line("/// </summary>");
            using (Method("public override void Forward(in " + Runtime + "BertBatch batch)"))
            {
                _w.Line("CheckBatch(batch);");
                Locals(forward: true);
                var types = new List<string>();
                if (_s.Mlm is not null || _s.Nsp || _s.Classification is not null || _s.TokenClassification is not null || _s.Span)
                    types.Add("I32 = " + Runtime + "DType.I32");
                if (_s.Mlm is not null || _s.TokenClassification is not null) types.Add("F32 = " + Runtime + "DType.F32");
                if (types.Count > 0) _w.Line("const " + Runtime + "DType " + string.Join(", ", types) + ";");
                var flags = LossFlags();
                if (_s.Mlm is not null) flags.Insert(0, ("mlm", "P > 0"));
                foreach (var (flag, condition) in flags) _w.Line("bool " + flag + " = " + condition + ";");
                RequireHeadInputs();
                _w.Line("be.Zero(Metrics);");
                _w.Line();

                _w.Line("// ---- embeddings: LN(word + position + segment), dropout ----");
                _w.Line("var x = A(a.EmbeddingOutput, N, H);  // [N,H] the residual stream");
                _w.Line("var branch = A(a.Branch, N, H);");
                _w.Line("be.EmbeddingsForward(x, A(a.EmbeddingSum, N, H), F(a.EmbeddingMean, N, 1), F(a.EmbeddingRstd, N, 1),");
                _w.Line("    batch.InputIds, batch.TokenTypeIds, w.EmbeddingsWordEmbeddingsWeight, w.EmbeddingsPositionEmbeddingsWeight,");
                _w.Line("    w.EmbeddingsTokenTypeEmbeddingsWeight, w.EmbeddingsLayerNormWeight, w.EmbeddingsLayerNormBias, B, S, H, eps, " + EmbeddingDropout + ");");
                _w.Line();
                LayersForward();
                _w.Line();
                _w.Line("SequenceOutput = x;");

                if (_s.Mlm is not null) MlmForward();
                if (_s.Pooler) PoolerForward();
                if (_s.Nsp) NspForward();
                if (_s.Classification is not null) ClassificationForward();
                if (_s.TokenClassification is not null) TokenClassificationForward();
                if (_s.Span) SpanForward();
            }
        }

        private void RequireHeadInputs()
        {
            const string i32 = "I32, \"Forward\", ";
            if (_s.Mlm is not null)
            {
                _w.Line("if (mlm) batch.MlmPositions.Require((long)B * P, " + i32 + "nameof(batch.MlmPositions));");
                using (_w.Block("if (mlmLoss)"))
                {
                    _w.Line("batch.MlmLabels.Require((long)B * P, " + i32 + "nameof(batch.MlmLabels));");
                    _w.Line("batch.MlmWeights.Require((long)B * P, F32, \"Forward\", nameof(batch.MlmWeights));");
                }
            }
            if (_s.Nsp) _w.Line("if (nspLoss) batch.NspLabels.Require(B, " + i32 + "nameof(batch.NspLabels));");
            if (_s.Classification is not null) _w.Line("if (classifierLoss) batch.Labels.Require(B, " + i32 + "nameof(batch.Labels));");
            if (_s.TokenClassification is not null)
            {
                _w.Line("if (classifierLoss) batch.Labels.Require(N, " + i32 + "nameof(batch.Labels));");
                _w.Line("if (classifierLoss && !batch.LabelWeights.IsNull) batch.LabelWeights.Require(N, F32, \"Forward\", nameof(batch.LabelWeights));");
            }
            if (_s.Span)
            {
                using (_w.Block("if (spanLoss)"))
                {
                    _w.Line("batch.StartPositions.Require(B, " + i32 + "nameof(batch.StartPositions));");
                    _w.Line("batch.EndPositions.Require(B, " + i32 + "nameof(batch.EndPositions));");
                }
            }
        }

        private void LayersForward()
        {
            using (_w.Block("for (int l = 0; l < L; l++)  // bert.encoder.layer.{l}"))
            {
                _w.Line("var lw = w.Layer[l];");
                _w.Line("var la = Layer(a, l);");
                _w.Line("uint site = (uint)(2 + 3 * l);  // dropout streams of this layer: site, site + 1, site + 2");
                _w.Line("be.Linear(la.Qkv, none, x, lw.AttentionSelfQueryKeyValueWeight, lw.AttentionSelfQueryKeyValueBias, N, H, 3 * H, None);  // self.{query,key,value} fused");
                _w.Line("be.AttentionForward(la.Context, la.AttentionSaved, Workspace, la.Qkv, batch.AttentionMask, B, S, NH, HD, Dropout(attentionP, site));");
                _w.Line("be.Linear(branch, none, la.Context, lw.AttentionOutputDenseWeight, lw.AttentionOutputDenseBias, N, H, H, None);");
                _w.Line("be.ResidualLayerNorm(la.AttentionOutput, la.AttentionSum, la.AttentionMean, la.AttentionRstd, x, branch,");
                _w.Line("    lw.AttentionOutputLayerNormWeight, lw.AttentionOutputLayerNormBias, N, H, eps, Dropout(hiddenP, site + 1));");
                _w.Line("be.Linear(la.FfnAct, la.FfnPre, la.AttentionOutput, lw.IntermediateDenseWeight, lw.IntermediateDenseBias, N, H, I, act);");
                _w.Line("be.Linear(branch, none, la.FfnAct, lw.OutputDenseWeight, lw.OutputDenseBias, N, I, H, None);");
                _w.Line("be.ResidualLayerNorm(la.Output, la.FfnSum, la.FfnMean, la.FfnRstd, la.AttentionOutput, branch,");
                _w.Line("    lw.OutputLayerNormWeight, lw.OutputLayerNormBias, N, H, eps, Dropout(hiddenP, site + 2));");
                _w.Line("x = la.Output;");
            }
        }

        private void MlmForward()
        {
            bool tied = _s.Mlm!.Tied;
            _w.Line();
            _w.Line("// ---- masked-LM head (cls.predictions) at the P masked positions of each sequence ----");
            using (_w.Block("if (mlm)"))
            {
                _w.Line("int BP = B * P;");
                _w.Line("var mlmInput = A(a.MlmInput, BP, H);");
                _w.Line("var mlmAct = A(a.MlmAct, BP, MT);");
                _w.Line("var mlmNorm = A(a.MlmNorm, BP, MT);");
                _w.Line("int LV = a.LogitsStride;  // the logits' row stride: V, or V padded inside the vocabulary GEMM");
                _w.Line("var logits = A(a.MlmLogits, BP, LV);");
                _w.Line("be.GatherRows(mlmInput, x, batch.MlmPositions, B, S, P, H);");
                _w.Line("be.Linear(mlmAct, A(a.MlmPre, BP, MT), mlmInput, w.ClsPredictionsTransformDenseWeight, w.ClsPredictionsTransformDenseBias, BP, H, MT, mlmActivation);");
                _w.Line("be.LayerNorm(mlmNorm, F(a.MlmMean, BP, 1), F(a.MlmRstd, BP, 1), mlmAct, w.ClsPredictionsTransformLayerNormWeight, w.ClsPredictionsTransformLayerNormBias, BP, MT, eps);");
                _w.Line("be.Linear(logits, none, mlmNorm, w.ClsPredictionsDecoderWeight, w.ClsPredictionsBias, BP, MT, V, None, LV);  // decoder" + (tied ? ": the word embeddings [V,H]" : ""));
                _w.Line("MlmLogits = logits;");
                _w.Line("MlmLogitsStride = LV;");
                _w.Line("if (mlmLoss)");
                _w.Line("    be.SoftmaxCrossEntropy(logits, Metrics.Slice(" + Runtime + "MetricSlot.MlmLoss, 3), logits, batch.MlmLabels, batch.MlmWeights, BP, V, batch.MlmGradScale, LV, batch.MlmGradScaleOnDevice);");
            }
            _w.Line("else MlmLogits = none;");
        }

        private void PoolerForward()
        {
            _w.Line();
            _w.Line("// ---- pooler: tanh(dense(h[CLS])) ----");
            _w.Line("var pooled = A(a.Pooled, B, H);");
            _w.Line("be.GatherRows(A(a.PoolerInput, B, H), x, ZeroPositions.Slice(0, B), B, S, 1, H);");
            _w.Line("be.Linear(pooled, A(a.PoolerPre, B, H), A(a.PoolerInput, B, H), w.PoolerDenseWeight, w.PoolerDenseBias, B, H, H, Tanh);");
            _w.Line("PooledOutput = pooled;");
        }

        private void NspForward()
        {
            _w.Line();
            _w.Line("// ---- next-sentence head (cls.seq_relationship) ----");
            _w.Line("var nspLogits = F(a.NspLogits, B, 2);");
            _w.Line("be.Linear(nspLogits, none, pooled, w.ClsSeqRelationshipWeight, w.ClsSeqRelationshipBias, B, H, 2, None);");
            _w.Line("NspLogits = nspLogits;");
            _w.Line("if (nspLoss)");
            _w.Line("    be.SoftmaxCrossEntropy(nspLogits, Metrics.Slice(" + Runtime + "MetricSlot.NspLoss, 3), nspLogits, batch.NspLabels, none, B, 2, micro / B);");
        }

        private void ClassificationForward()
        {
            _w.Line();
            _w.Line("// ---- sequence classification head (classifier) on the pooled output ----");
            _w.Line("var classifierInput = A(a.ClassifierInput, B, H);");
            _w.Line("var classifierLogits = F(a.ClassifierLogits, B, C);");
            _w.Line("be.Dropout(classifierInput, pooled, (long)B * H, " + ClassifierDropout + ");");
            _w.Line("be.Linear(classifierLogits, none, classifierInput, w.ClassifierWeight, w.ClassifierBias, B, H, C, None);");
            _w.Line("ClassifierLogits = classifierLogits;");
            _w.Line("if (classifierLoss)");
            _w.Line("    be.SoftmaxCrossEntropy(classifierLogits, Metrics.Slice(" + Runtime + "MetricSlot.ClsLoss, 3), classifierLogits, batch.Labels, none, B, C, micro / B);");
        }

        private void TokenClassificationForward()
        {
            _w.Line();
            _w.Line("// ---- token classification head (classifier) on every token ----");
            _w.Line("var classifierInput = A(a.ClassifierInput, N, H);");
            _w.Line("var classifierLogits = F(a.ClassifierLogits, N, C);");
            _w.Line("be.Dropout(classifierInput, x, (long)N * H, " + ClassifierDropout + ");");
            _w.Line("be.Linear(classifierLogits, none, classifierInput, w.ClassifierWeight, w.ClassifierBias, N, H, C, None);");
            _w.Line("ClassifierLogits = classifierLogits;");
            _w.Line("// Without weights every token counts, so the mean needs 1/N.");
            _w.Line("if (classifierLoss)");
            _w.Line("    be.SoftmaxCrossEntropy(classifierLogits, Metrics.Slice(" + Runtime + "MetricSlot.ClsLoss, 3), classifierLogits, batch.Labels, batch.LabelWeights, N, C,");
            _w.Line("        batch.LabelWeights.IsNull ? micro / N : batch.LabelGradScale);");
        }

        private void SpanForward()
        {
            _w.Line();
            _w.Line("// ---- span head (qa_outputs): row 0 of the weight gives start logits, row 1 end logits, [B,S] each ----");
            _w.Line("var startLogits = F(a.SpanLogits, B, S);");
            _w.Line("var endLogits = F(a.SpanLogits + N, B, S);");
            _w.Line("be.Linear(startLogits, none, x, w.QaOutputsWeight.Slice(0, H), w.QaOutputsBias.Slice(0, 1), N, H, 1, None);");
            _w.Line("be.Linear(endLogits, none, x, w.QaOutputsWeight.Slice(H, H), w.QaOutputsBias.Slice(1, 1), N, H, 1, None);");
            _w.Line("SpanLogits = F(a.SpanLogits, 2, N);");
            using (_w.Block("if (spanLoss)"))
            {
                _w.Line("// The loss is the mean of the start and end cross-entropies over the batch.");
                _w.Line("be.SoftmaxCrossEntropy(startLogits, Metrics.Slice(" + Runtime + "MetricSlot.SpanStartLoss, 3), startLogits, batch.StartPositions, none, B, S, 0.5f * micro / B);");
                _w.Line("be.SoftmaxCrossEntropy(endLogits, Metrics.Slice(" + Runtime + "MetricSlot.SpanEndLoss, 3), endLogits, batch.EndPositions, none, B, S, 0.5f * micro / B);");
            }
        }

        // ---- backward ---------------------------------------------------------------------------

        private void Backward()
        {
            var flags = LossFlags();
            _w.Line("/// <summary>");
            _w.Line("/// Accumulates (+=) into <see cref=\"" + Runtime + "BertModelBase.Gradients\"/> the gradient of the losses the last");
            _w.Line("/// <see cref=\"Forward\"/> computed, for the same batch: the forward ops in exact reverse order. Heads");
            _w.Line("/// without labels contribute nothing; a batch with no labels at all is an error.");
            _w.Line("/// </summary>");
            using (Method("public override void Backward(in " + Runtime + "BertBatch batch)"))
            {
                if (flags.Count == 0)
                {
                    _w.Line("throw new global::System.InvalidOperationException(\"" + Name + " has no head with a loss ([MlmHead], [NspHead], [ClassificationHead], [TokenClassificationHead] or [SpanHead]), so there is nothing to differentiate\");");
                    return;
                }
                Locals(forward: false);
                var names = new List<string>();
                var conditions = new List<string>();
                foreach (var (flag, condition) in flags)
                {
                    _w.Line("bool " + flag + " = " + condition + ";");
                    conditions.Add(flag);
                }
                if (_s.Mlm is not null) names.Add("MlmLabels with Predictions > 0");
                if (_s.Nsp) names.Add("NspLabels");
                if (_s.Classification is not null || _s.TokenClassification is not null) names.Add("Labels");
                if (_s.Span) names.Add("StartPositions");
                _w.Line("if (!(" + string.Join(" || ", conditions) + "))");
                _w.Line("    throw new global::System.ArgumentException(\"" + Name + ".Backward: the batch has no labels (" + string.Join(", ", names) + "), so there is no loss to differentiate\", nameof(batch));");
                if (_s.Span) _w.Line("var x = Layer(a, L - 1).Output;  // [N,H] sequence output");
                _w.Line("var dx = A(a.DHidden, N, H);  // [N,H] gradient of the residual stream");
                _w.Line("var dBranch = A(a.DBranch, N, H);");

                // The heads on the sequence output in reverse forward order; the first to run writes dx.
                if (_s.Span) SpanBackward();
                else if (_s.TokenClassification is not null) TokenClassificationBackward();
                else
                {
                    _w.Line("be.Zero(dx);");
                }
                if (_s.Pooler && PooledLoss) PooledBackward();
                if (_s.Mlm is not null) MlmBackward();

                _w.Line("var dContext = A(a.DContext, N, H);");
                _w.Line("var dQkv = A(a.DQkv, N, 3 * H);");
                _w.Line("var dFfn = A(a.DFfn, N, I);");
                _w.Line();
                LayersBackward();

                _w.Line();
                _w.Line("// ---- embeddings ----");
                _w.Line("be.EmbeddingsBackward(g.EmbeddingsWordEmbeddingsWeight, g.EmbeddingsPositionEmbeddingsWeight, g.EmbeddingsTokenTypeEmbeddingsWeight,");
                _w.Line("    g.EmbeddingsLayerNormWeight, g.EmbeddingsLayerNormBias,");
                _w.Line("    F(a.EmbeddingScratch, N, H), dx, A(a.EmbeddingSum, N, H), F(a.EmbeddingMean, N, 1), F(a.EmbeddingRstd, N, 1),");
                _w.Line("    batch.InputIds, batch.TokenTypeIds, w.EmbeddingsLayerNormWeight, B, S, H, " + EmbeddingDropout + ");");
            }
        }

        private void SpanBackward()
        {
            _w.Line();
            _w.Line("// ---- span head: dx = the end and start logits' gradients through their weight rows ----");
            using (_w.Block("if (spanLoss)"))
            {
                _w.Line("be.LinearBackward(dx, g.QaOutputsWeight.Slice(H, H), g.QaOutputsBias.Slice(1, 1), F(a.SpanLogits + N, N, 1), x, w.QaOutputsWeight.Slice(H, H), N, H, 1, false);");
                _w.Line("be.LinearBackward(dx, g.QaOutputsWeight.Slice(0, H), g.QaOutputsBias.Slice(0, 1), F(a.SpanLogits, N, 1), x, w.QaOutputsWeight.Slice(0, H), N, H, 1, true);");
            }
            _w.Line("else be.Zero(dx);");
        }

        private void TokenClassificationBackward()
        {
            _w.Line();
            _w.Line("// ---- token classification head: dx = dropout(the classifier input's gradient) ----");
            using (_w.Block("if (classifierLoss)"))
            {
                _w.Line("be.LinearBackward(dx, g.ClassifierWeight, g.ClassifierBias, F(a.ClassifierLogits, N, C), A(a.ClassifierInput, N, H), w.ClassifierWeight, N, H, C, false);");
                _w.Line("be.Dropout(dx, dx, (long)N * H, " + ClassifierDropout + ");");
            }
            _w.Line("else be.Zero(dx);");
        }

        private void PooledBackward()
        {
            var pooledFlags = new List<string>();
            _w.Line();
            _w.Line("var dPooled = A(a.DPooled, B, H);");
            if (_s.Classification is not null)
            {
                _w.Line("// ---- sequence classification head ----");
                using (_w.Block("if (classifierLoss)"))
                {
                    _w.Line("be.LinearBackward(dPooled, g.ClassifierWeight, g.ClassifierBias, F(a.ClassifierLogits, B, C), A(a.ClassifierInput, B, H), w.ClassifierWeight, B, H, C, false);");
                    _w.Line("be.Dropout(dPooled, dPooled, (long)B * H, " + ClassifierDropout + ");");
                }
                pooledFlags.Add("classifierLoss");
            }
            if (_s.Nsp)
            {
                _w.Line("// ---- next-sentence head ----");
                var accumulate = pooledFlags.Count > 0 ? string.Join(" || ", pooledFlags) : "false";
                _w.Line("if (nspLoss)");
                _w.Line("    be.LinearBackward(dPooled, g.ClsSeqRelationshipWeight, g.ClsSeqRelationshipBias, F(a.NspLogits, B, 2), A(a.Pooled, B, H), w.ClsSeqRelationshipWeight, B, H, 2, " + accumulate + ");");
                pooledFlags.Add("nspLoss");
            }
            _w.Line("// ---- pooler: its [CLS] gradient joins dx at position 0 ----");
            using (_w.Block("if (" + string.Join(" || ", pooledFlags) + ")"))
            {
                _w.Line("var dPoolerInput = A(a.DPoolerInput, B, H);");
                _w.Line("be.ActivationBackward(dPooled, dPooled, A(a.PoolerPre, B, H), (long)B * H, Tanh);");
                _w.Line("be.LinearBackward(dPoolerInput, g.PoolerDenseWeight, g.PoolerDenseBias, dPooled, A(a.PoolerInput, B, H), w.PoolerDenseWeight, B, H, H, false);");
                _w.Line("be.ScatterAddRows(dx, dPoolerInput, ZeroPositions.Slice(0, B), B, S, 1, H);");
            }
        }

        private void MlmBackward()
        {
            bool tied = _s.Mlm!.Tied;
            _w.Line();
            _w.Line("// ---- masked-LM head: its gradient joins dx at the masked positions ----");
            using (_w.Block("if (mlmLoss)"))
            {
                _w.Line("int BP = B * P;");
                _w.Line("var dMlmNorm = A(a.DMlmNorm, BP, MT);");
                _w.Line("var dMlmAct = A(a.DMlmAct, BP, MT);");
                _w.Line("var dMlmInput = A(a.DMlmInput, BP, H);");
                _w.Line("be.LinearBackward(dMlmNorm, g.ClsPredictionsDecoderWeight, g.ClsPredictionsBias, A(a.MlmLogits, BP, a.LogitsStride), A(a.MlmNorm, BP, MT), w.ClsPredictionsDecoderWeight, BP, MT, V, false, a.LogitsStride);" +
                        (tied ? "  // tied: += the word embeddings' gradient" : ""));
                _w.Line("be.LayerNormBackward(dMlmAct, g.ClsPredictionsTransformLayerNormWeight, g.ClsPredictionsTransformLayerNormBias, dMlmNorm, A(a.MlmAct, BP, MT),");
                _w.Line("    F(a.MlmMean, BP, 1), F(a.MlmRstd, BP, 1), w.ClsPredictionsTransformLayerNormWeight, BP, MT);");
                _w.Line("be.ActivationBackward(dMlmAct, dMlmAct, A(a.MlmPre, BP, MT), (long)BP * MT, mlmActivation);");
                _w.Line("be.LinearBackward(dMlmInput, g.ClsPredictionsTransformDenseWeight, g.ClsPredictionsTransformDenseBias, dMlmAct, A(a.MlmInput, BP, H), w.ClsPredictionsTransformDenseWeight, BP, H, MT, false);");
                _w.Line("be.ScatterAddRows(dx, dMlmInput, batch.MlmPositions, B, S, P, H);");
            }
        }

        private void LayersBackward()
        {
            using (_w.Block("for (int l = L - 1; l >= 0; l--)  // bert.encoder.layer.{l}, last first"))
            {
                _w.Line("var lw = w.Layer[l];");
                _w.Line("var lg = g.Layer[l];");
                _w.Line("var la = Layer(a, l);");
                _w.Line("uint site = (uint)(2 + 3 * l);");
                _w.Line("be.ResidualLayerNormBackward(dx, dBranch, lg.OutputLayerNormWeight, lg.OutputLayerNormBias, dx, la.FfnSum, la.FfnMean, la.FfnRstd,");
                _w.Line("    lw.OutputLayerNormWeight, N, H, Dropout(hiddenP, site + 2));");
                _w.Line("be.LinearBackward(dFfn, lg.OutputDenseWeight, lg.OutputDenseBias, dBranch, la.FfnAct, lw.OutputDenseWeight, N, I, H, false);");
                _w.Line("be.ActivationBackward(dFfn, dFfn, la.FfnPre, (long)N * I, act);");
                _w.Line("be.LinearBackward(dx, lg.IntermediateDenseWeight, lg.IntermediateDenseBias, dFfn, la.AttentionOutput, lw.IntermediateDenseWeight, N, H, I, true);  // += the residual path");
                _w.Line("be.ResidualLayerNormBackward(dx, dBranch, lg.AttentionOutputLayerNormWeight, lg.AttentionOutputLayerNormBias, dx, la.AttentionSum, la.AttentionMean, la.AttentionRstd,");
                _w.Line("    lw.AttentionOutputLayerNormWeight, N, H, Dropout(hiddenP, site + 1));");
                _w.Line("be.LinearBackward(dContext, lg.AttentionOutputDenseWeight, lg.AttentionOutputDenseBias, dBranch, la.Context, lw.AttentionOutputDenseWeight, N, H, H, false);");
                _w.Line("be.AttentionBackward(dQkv, Workspace, dContext, la.Qkv, la.Context, la.AttentionSaved, batch.AttentionMask, B, S, NH, HD, Dropout(attentionP, site));");
                _w.Line("be.LinearBackward(dx, lg.AttentionSelfQueryKeyValueWeight, lg.AttentionSelfQueryKeyValueBias, dQkv, la.Input, lw.AttentionSelfQueryKeyValueWeight, N, H, 3 * H, true);  // += the residual path");
                _w.Line("LayerGradientsDone(l);  // layer l's parameter gradients are final: data parallelism starts their all-reduce");
            }
        }
    }
}
