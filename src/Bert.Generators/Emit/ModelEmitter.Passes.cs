using System.Collections.Generic;
using Bert.Generators.Helpers;
using Bert.Generators.Model;

namespace Bert.Generators.Emit;

internal static partial class ModelEmitter
{
    private sealed partial class Emitter
    {
        // Dropout streams: one constant per dropout site, so no two sites share a mask.
        private const int EmbeddingStream = 1;

        private static int LayerStream(int layer, int site) => 2 + 3 * layer + site;  // site 0 attention probs, 1 attention output, 2 feed-forward output

        private int ClassifierStream => LayerStream(_s.Layers, 0);

        private string Eps => Format.Float(_s.Encoder.LayerNormEps);

        private string HiddenDropout(int layer, int site) =>
            "Dropout(" + Format.Float(site == 0 ? _s.Encoder.AttentionDropout : _s.Encoder.HiddenDropout) + ", " + I(LayerStream(layer, site)) + ")";

        private string ClassifierDropout(double p) => "Dropout(" + Format.Float(p) + ", " + I(ClassifierStream) + ")";

        private string EmbeddingDropout => "Dropout(" + Format.Float(_s.Embeddings.Dropout) + ", " + I(EmbeddingStream) + ")";

        private static string L(int layer) => ParameterLayout.Layer(layer);

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
            SizeConstants(includeHeadDim: true, includeLayers: false, longs: false);
            var sizes = "int B = batch.Batch, S = batch.Seq, N = B * S";
            if (_s.Mlm is not null) sizes += ", P = batch.Predictions, V = _vocab";
            _w.Line(sizes + ";");
            _w.Line("var be = Backend;");
            if (forward && LossFlags().Count > 0)
                _w.Line("float micro = batch.MicroBatchScale > 0f ? batch.MicroBatchScale : 1f;  // 1/accumulation: micro-batches sum to the batch mean");
            _w.Line("var none = " + TensorRef + ".Null;");
            _w.Line("var a = new ArenaLayout(B, S, " + (_s.Mlm is not null ? "P" : "0") + ", " + (_s.Mlm is not null ? "V" : "_vocab") + ");");
            var acts = new SortedSet<string> { _s.Encoder.Activation };
            if (forward) acts.Add("None");
            if (_s.Mlm is { } m) acts.Add(m.Activation);
            if (_s.Pooler && (forward || PooledLoss)) acts.Add("Tanh");
            var consts = new List<string>();
            foreach (var act in acts) consts.Add(act + " = " + Runtime + "Activation." + act);
            _w.Line("const " + Runtime + "Activation " + string.Join(", ", consts) + ";");
        }

        private void Forward()
        {
            _w.Line("/// <summary>");
            _w.Line("/// Embeddings, " + I(_s.Layers) + " encoder layers and the heads for one micro-batch. A head's loss (and its gradient,");
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
                _w.Line("    batch.InputIds, batch.TokenTypeIds, " + Wt("bert.embeddings.word_embeddings.weight") + ", " +
                        Wt("bert.embeddings.position_embeddings.weight") + ", " + Wt("bert.embeddings.token_type_embeddings.weight") + ", " +
                        Wt("bert.embeddings.LayerNorm.weight") + ", " + Wt("bert.embeddings.LayerNorm.bias") + ",");
                _w.Line("    B, S, H, " + Format.Float(_s.Embeddings.LayerNormEps) + ", " + EmbeddingDropout + ");");

                for (int l = 0; l < _s.Layers; l++) LayerForward(l);
                _w.Line();
                _w.Line("SequenceOutput = x;");

                if (_s.Mlm is { } mlm) MlmForward(mlm);
                if (_s.Pooler) PoolerForward();
                if (_s.Nsp) NspForward();
                if (_s.Classification is { } cls) ClassificationForward(cls);
                if (_s.TokenClassification is { } tok) TokenClassificationForward(tok);
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

        private void LayerForward(int l)
        {
            var p = L(l);
            var v = "l" + I(l);
            _w.Line();
            _w.Line("// ---- " + p.TrimEnd('.') + " ----");
            _w.Line("var " + v + " = Layer(a, " + I(l) + ");");
            _w.Line("be.Linear(" + v + ".Qkv, none, x, W(" + I(Row(p + "attention.self.query.weight")) + ", 3), W(" + I(Row(p + "attention.self.query.bias")) + ", 3), N, H, 3 * H, None);  // self.{query,key,value} fused");
            _w.Line("be.AttentionForward(" + v + ".Context, " + v + ".Probs, Workspace, " + v + ".Qkv, batch.AttentionMask, B, S, NH, HD, " + HiddenDropout(l, 0) + ");");
            _w.Line("be.Linear(branch, none, " + v + ".Context, " + Wt(p + "attention.output.dense.weight") + ", " + Wt(p + "attention.output.dense.bias") + ", N, H, H, None);");
            _w.Line("be.ResidualLayerNorm(" + v + ".AttentionOutput, " + v + ".AttentionSum, " + v + ".AttentionMean, " + v + ".AttentionRstd, x, branch,");
            _w.Line("    " + Wt(p + "attention.output.LayerNorm.weight") + ", " + Wt(p + "attention.output.LayerNorm.bias") + ", N, H, " + Eps + ", " + HiddenDropout(l, 1) + ");");
            _w.Line("be.Linear(" + v + ".FfnAct, " + v + ".FfnPre, " + v + ".AttentionOutput, " + Wt(p + "intermediate.dense.weight") + ", " + Wt(p + "intermediate.dense.bias") + ", N, H, I, " + _s.Encoder.Activation + ");");
            _w.Line("be.Linear(branch, none, " + v + ".FfnAct, " + Wt(p + "output.dense.weight") + ", " + Wt(p + "output.dense.bias") + ", N, I, H, None);");
            _w.Line("be.ResidualLayerNorm(" + v + ".Output, " + v + ".FfnSum, " + v + ".FfnMean, " + v + ".FfnRstd, " + v + ".AttentionOutput, branch,");
            _w.Line("    " + Wt(p + "output.LayerNorm.weight") + ", " + Wt(p + "output.LayerNorm.bias") + ", N, H, " + Eps + ", " + HiddenDropout(l, 2) + ");");
            _w.Line("x = " + v + ".Output;");
        }

        private string Decoder(MlmSpec mlm) => mlm.Tied ? "bert.embeddings.word_embeddings.weight" : "cls.predictions.decoder.weight";

        private void MlmForward(MlmSpec mlm)
        {
            _w.Line();
            _w.Line("// ---- masked-LM head (cls.predictions) at the P masked positions of each sequence ----");
            using (_w.Block("if (mlm)"))
            {
                _w.Line("int BP = B * P;");
                _w.Line("var mlmInput = A(a.MlmInput, BP, H);");
                _w.Line("var mlmAct = A(a.MlmAct, BP, MT);");
                _w.Line("var mlmNorm = A(a.MlmNorm, BP, MT);");
                _w.Line("var logits = F(a.MlmLogits, BP, V);");
                _w.Line("be.GatherRows(mlmInput, x, batch.MlmPositions, B, S, P, H);");
                _w.Line("be.Linear(mlmAct, A(a.MlmPre, BP, MT), mlmInput, " + Wt("cls.predictions.transform.dense.weight") + ", " + Wt("cls.predictions.transform.dense.bias") + ", BP, H, MT, " + mlm.Activation + ");");
                _w.Line("be.LayerNorm(mlmNorm, F(a.MlmMean, BP, 1), F(a.MlmRstd, BP, 1), mlmAct, " + Wt("cls.predictions.transform.LayerNorm.weight") + ", " + Wt("cls.predictions.transform.LayerNorm.bias") + ", BP, MT, " + Eps + ");");
                _w.Line("be.Linear(logits, none, mlmNorm, " + Wt(Decoder(mlm)) + ", " + Wt("cls.predictions.bias") + ", BP, MT, V, None);  // decoder" + (mlm.Tied ? ": the word embeddings [V,H]" : ""));
                _w.Line("MlmLogits = logits;");
                _w.Line("if (mlmLoss)");
                _w.Line("    be.SoftmaxCrossEntropy(logits, Metrics.Slice(" + Runtime + "MetricSlot.MlmLoss, 3), logits, batch.MlmLabels, batch.MlmWeights, BP, V, batch.MlmGradScale);");
            }
            _w.Line("else MlmLogits = none;");
        }

        private void PoolerForward()
        {
            _w.Line();
            _w.Line("// ---- pooler: tanh(dense(h[CLS])) ----");
            _w.Line("var pooled = A(a.Pooled, B, H);");
            _w.Line("be.GatherRows(A(a.PoolerInput, B, H), x, ZeroPositions.Slice(0, B), B, S, 1, H);");
            _w.Line("be.Linear(pooled, A(a.PoolerPre, B, H), A(a.PoolerInput, B, H), " + Wt("bert.pooler.dense.weight") + ", " + Wt("bert.pooler.dense.bias") + ", B, H, H, Tanh);");
            _w.Line("PooledOutput = pooled;");
        }

        private void NspForward()
        {
            _w.Line();
            _w.Line("// ---- next-sentence head (cls.seq_relationship) ----");
            _w.Line("var nspLogits = F(a.NspLogits, B, 2);");
            _w.Line("be.Linear(nspLogits, none, pooled, " + Wt("cls.seq_relationship.weight") + ", " + Wt("cls.seq_relationship.bias") + ", B, H, 2, None);");
            _w.Line("NspLogits = nspLogits;");
            _w.Line("if (nspLoss)");
            _w.Line("    be.SoftmaxCrossEntropy(nspLogits, Metrics.Slice(" + Runtime + "MetricSlot.NspLoss, 3), nspLogits, batch.NspLabels, none, B, 2, micro / B);");
        }

        private void ClassificationForward(ClassifierSpec cls)
        {
            _w.Line();
            _w.Line("// ---- sequence classification head (classifier) on the pooled output ----");
            _w.Line("var classifierInput = A(a.ClassifierInput, B, H);");
            _w.Line("var classifierLogits = F(a.ClassifierLogits, B, C);");
            _w.Line("be.Dropout(classifierInput, pooled, (long)B * H, " + ClassifierDropout(cls.Dropout) + ");");
            _w.Line("be.Linear(classifierLogits, none, classifierInput, " + Wt("classifier.weight") + ", " + Wt("classifier.bias") + ", B, H, C, None);");
            _w.Line("ClassifierLogits = classifierLogits;");
            _w.Line("if (classifierLoss)");
            _w.Line("    be.SoftmaxCrossEntropy(classifierLogits, Metrics.Slice(" + Runtime + "MetricSlot.ClsLoss, 3), classifierLogits, batch.Labels, none, B, C, micro / B);");
        }

        private void TokenClassificationForward(ClassifierSpec tok)
        {
            _w.Line();
            _w.Line("// ---- token classification head (classifier) on every token ----");
            _w.Line("var classifierInput = A(a.ClassifierInput, N, H);");
            _w.Line("var classifierLogits = F(a.ClassifierLogits, N, C);");
            _w.Line("be.Dropout(classifierInput, x, (long)N * H, " + ClassifierDropout(tok.Dropout) + ");");
            _w.Line("be.Linear(classifierLogits, none, classifierInput, " + Wt("classifier.weight") + ", " + Wt("classifier.bias") + ", N, H, C, None);");
            _w.Line("ClassifierLogits = classifierLogits;");
            _w.Line("// Without weights every token counts, so the mean needs 1/N.");
            _w.Line("if (classifierLoss)");
            _w.Line("    be.SoftmaxCrossEntropy(classifierLogits, Metrics.Slice(" + Runtime + "MetricSlot.ClsLoss, 3), classifierLogits, batch.Labels, batch.LabelWeights, N, C,");
            _w.Line("        batch.LabelWeights.IsNull ? micro / N : batch.LabelGradScale);");
        }

        private void SpanForward()
        {
            var w = Row("qa_outputs.weight");
            var b = Row("qa_outputs.bias");
            _w.Line();
            _w.Line("// ---- span head (qa_outputs): row 0 of the weight gives start logits, row 1 end logits, [B,S] each ----");
            _w.Line("var startLogits = F(a.SpanLogits, B, S);");
            _w.Line("var endLogits = F(a.SpanLogits + N, B, S);");
            _w.Line("be.Linear(startLogits, none, x, W(" + I(w) + ").Slice(0, H), W(" + I(b) + ").Slice(0, 1), N, H, 1, None);");
            _w.Line("be.Linear(endLogits, none, x, W(" + I(w) + ").Slice(H, H), W(" + I(b) + ").Slice(1, 1), N, H, 1, None);");
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
                if (_s.Span) _w.Line("var x = Layer(a, " + I(_s.Layers - 1) + ").Output;  // [N,H] sequence output");
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
                if (_s.Mlm is { } mlm) MlmBackward(mlm);

                _w.Line("var dContext = A(a.DContext, N, H);");
                _w.Line("var dQkv = A(a.DQkv, N, 3 * H);");
                _w.Line("var dFfn = A(a.DFfn, N, I);");
                for (int l = _s.Layers - 1; l >= 0; l--) LayerBackward(l);

                _w.Line();
                _w.Line("// ---- embeddings ----");
                _w.Line("be.EmbeddingsBackward(" + Gr("bert.embeddings.word_embeddings.weight") + ", " + Gr("bert.embeddings.position_embeddings.weight") + ", " +
                        Gr("bert.embeddings.token_type_embeddings.weight") + ", " + Gr("bert.embeddings.LayerNorm.weight") + ", " + Gr("bert.embeddings.LayerNorm.bias") + ",");
                _w.Line("    F(a.EmbeddingScratch, N, H), dx, A(a.EmbeddingSum, N, H), F(a.EmbeddingMean, N, 1), F(a.EmbeddingRstd, N, 1),");
                _w.Line("    batch.InputIds, batch.TokenTypeIds, " + Wt("bert.embeddings.LayerNorm.weight") + ", B, S, H, " + EmbeddingDropout + ");");
            }
        }

        private void SpanBackward()
        {
            var w = Row("qa_outputs.weight");
            var b = Row("qa_outputs.bias");
            _w.Line();
            _w.Line("// ---- span head: dx = the end and start logits' gradients through their weight rows ----");
            using (_w.Block("if (spanLoss)"))
            {
                _w.Line("be.LinearBackward(dx, G(" + I(w) + ").Slice(H, H), G(" + I(b) + ").Slice(1, 1), F(a.SpanLogits + N, N, 1), x, W(" + I(w) + ").Slice(H, H), N, H, 1, false);");
                _w.Line("be.LinearBackward(dx, G(" + I(w) + ").Slice(0, H), G(" + I(b) + ").Slice(0, 1), F(a.SpanLogits, N, 1), x, W(" + I(w) + ").Slice(0, H), N, H, 1, true);");
            }
            _w.Line("else be.Zero(dx);");
        }

        private void TokenClassificationBackward()
        {
            var tok = _s.TokenClassification!;
            _w.Line();
            _w.Line("// ---- token classification head: dx = dropout(the classifier input's gradient) ----");
            using (_w.Block("if (classifierLoss)"))
            {
                _w.Line("be.LinearBackward(dx, " + Gr("classifier.weight") + ", " + Gr("classifier.bias") + ", F(a.ClassifierLogits, N, C), A(a.ClassifierInput, N, H), " + Wt("classifier.weight") + ", N, H, C, false);");
                _w.Line("be.Dropout(dx, dx, (long)N * H, " + ClassifierDropout(tok.Dropout) + ");");
            }
            _w.Line("else be.Zero(dx);");
        }

        private void PooledBackward()
        {
            var pooledFlags = new List<string>();
            _w.Line();
            _w.Line("var dPooled = A(a.DPooled, B, H);");
            if (_s.Classification is { } cls)
            {
                _w.Line("// ---- sequence classification head ----");
                using (_w.Block("if (classifierLoss)"))
                {
                    _w.Line("be.LinearBackward(dPooled, " + Gr("classifier.weight") + ", " + Gr("classifier.bias") + ", F(a.ClassifierLogits, B, C), A(a.ClassifierInput, B, H), " + Wt("classifier.weight") + ", B, H, C, false);");
                    _w.Line("be.Dropout(dPooled, dPooled, (long)B * H, " + ClassifierDropout(cls.Dropout) + ");");
                }
                pooledFlags.Add("classifierLoss");
            }
            if (_s.Nsp)
            {
                _w.Line("// ---- next-sentence head ----");
                var accumulate = pooledFlags.Count > 0 ? string.Join(" || ", pooledFlags) : "false";
                _w.Line("if (nspLoss)");
                _w.Line("    be.LinearBackward(dPooled, " + Gr("cls.seq_relationship.weight") + ", " + Gr("cls.seq_relationship.bias") + ", F(a.NspLogits, B, 2), A(a.Pooled, B, H), " + Wt("cls.seq_relationship.weight") + ", B, H, 2, " + accumulate + ");");
                pooledFlags.Add("nspLoss");
            }
            _w.Line("// ---- pooler: its [CLS] gradient joins dx at position 0 ----");
            using (_w.Block("if (" + string.Join(" || ", pooledFlags) + ")"))
            {
                _w.Line("var dPoolerInput = A(a.DPoolerInput, B, H);");
                _w.Line("be.ActivationBackward(dPooled, dPooled, A(a.PoolerPre, B, H), (long)B * H, Tanh);");
                _w.Line("be.LinearBackward(dPoolerInput, " + Gr("bert.pooler.dense.weight") + ", " + Gr("bert.pooler.dense.bias") + ", dPooled, A(a.PoolerInput, B, H), " + Wt("bert.pooler.dense.weight") + ", B, H, H, false);");
                _w.Line("be.ScatterAddRows(dx, dPoolerInput, ZeroPositions.Slice(0, B), B, S, 1, H);");
            }
        }

        private void MlmBackward(MlmSpec mlm)
        {
            _w.Line();
            _w.Line("// ---- masked-LM head: its gradient joins dx at the masked positions ----");
            using (_w.Block("if (mlmLoss)"))
            {
                _w.Line("int BP = B * P;");
                _w.Line("var dMlmNorm = A(a.DMlmNorm, BP, MT);");
                _w.Line("var dMlmAct = A(a.DMlmAct, BP, MT);");
                _w.Line("var dMlmInput = A(a.DMlmInput, BP, H);");
                _w.Line("be.LinearBackward(dMlmNorm, " + Gr(Decoder(mlm)) + ", " + Gr("cls.predictions.bias") + ", F(a.MlmLogits, BP, V), A(a.MlmNorm, BP, MT), " + Wt(Decoder(mlm)) + ", BP, MT, V, false);" +
                        (mlm.Tied ? "  // tied: += the word embeddings' gradient" : ""));
                _w.Line("be.LayerNormBackward(dMlmAct, " + Gr("cls.predictions.transform.LayerNorm.weight") + ", " + Gr("cls.predictions.transform.LayerNorm.bias") + ", dMlmNorm, A(a.MlmAct, BP, MT),");
                _w.Line("    F(a.MlmMean, BP, 1), F(a.MlmRstd, BP, 1), " + Wt("cls.predictions.transform.LayerNorm.weight") + ", BP, MT);");
                _w.Line("be.ActivationBackward(dMlmAct, dMlmAct, A(a.MlmPre, BP, MT), (long)BP * MT, " + mlm.Activation + ");");
                _w.Line("be.LinearBackward(dMlmInput, " + Gr("cls.predictions.transform.dense.weight") + ", " + Gr("cls.predictions.transform.dense.bias") + ", dMlmAct, A(a.MlmInput, BP, H), " + Wt("cls.predictions.transform.dense.weight") + ", BP, H, MT, false);");
                _w.Line("be.ScatterAddRows(dx, dMlmInput, batch.MlmPositions, B, S, P, H);");
            }
        }

        private void LayerBackward(int l)
        {
            var p = L(l);
            var v = "l" + I(l);
            _w.Line();
            _w.Line("// ---- " + p.TrimEnd('.') + " ----");
            _w.Line("var " + v + " = Layer(a, " + I(l) + ");");
            _w.Line("be.ResidualLayerNormBackward(dx, dBranch, " + Gr(p + "output.LayerNorm.weight") + ", " + Gr(p + "output.LayerNorm.bias") + ", dx, " + v + ".FfnSum, " + v + ".FfnMean, " + v + ".FfnRstd,");
            _w.Line("    " + Wt(p + "output.LayerNorm.weight") + ", N, H, " + HiddenDropout(l, 2) + ");");
            _w.Line("be.LinearBackward(dFfn, " + Gr(p + "output.dense.weight") + ", " + Gr(p + "output.dense.bias") + ", dBranch, " + v + ".FfnAct, " + Wt(p + "output.dense.weight") + ", N, I, H, false);");
            _w.Line("be.ActivationBackward(dFfn, dFfn, " + v + ".FfnPre, (long)N * I, " + _s.Encoder.Activation + ");");
            _w.Line("be.LinearBackward(dx, " + Gr(p + "intermediate.dense.weight") + ", " + Gr(p + "intermediate.dense.bias") + ", dFfn, " + v + ".AttentionOutput, " + Wt(p + "intermediate.dense.weight") + ", N, H, I, true);  // += the residual path");
            _w.Line("be.ResidualLayerNormBackward(dx, dBranch, " + Gr(p + "attention.output.LayerNorm.weight") + ", " + Gr(p + "attention.output.LayerNorm.bias") + ", dx, " + v + ".AttentionSum, " + v + ".AttentionMean, " + v + ".AttentionRstd,");
            _w.Line("    " + Wt(p + "attention.output.LayerNorm.weight") + ", N, H, " + HiddenDropout(l, 1) + ");");
            _w.Line("be.LinearBackward(dContext, " + Gr(p + "attention.output.dense.weight") + ", " + Gr(p + "attention.output.dense.bias") + ", dBranch, " + v + ".Context, " + Wt(p + "attention.output.dense.weight") + ", N, H, H, false);");
            _w.Line("be.AttentionBackward(dQkv, Workspace, dContext, " + v + ".Qkv, " + v + ".Probs, batch.AttentionMask, B, S, NH, HD, " + HiddenDropout(l, 0) + ");");
            _w.Line("be.LinearBackward(dx, G(" + I(Row(p + "attention.self.query.weight")) + ", 3), G(" + I(Row(p + "attention.self.query.bias")) + ", 3), dQkv, " + v + ".Input, W(" +
                    I(Row(p + "attention.self.query.weight")) + ", 3), N, H, 3 * H, true);  // += the residual path");
        }
    }
}
