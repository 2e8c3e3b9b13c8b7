using Bert.Runtime;
using Bert.Runtime.IO;
using Bert.Runtime.Presets;
using NUnit.Framework;

namespace Bert.Tests.IO;

/// <summary>The checkpoint side's layout rule (used by import/export without a compiled model) must
/// be exactly the generator's table: same names, shapes, offsets and decay flags.</summary>
public class LayoutAgreementTests
{
    [TestCaseSource(typeof(ModelPresets), nameof(ModelPresets.Names))]
    public void ParameterLayoutEqualsTheGeneratedTable(string preset)
    {
        var generated = ModelPresets.Get(preset).Table;
        var rule = ParameterLayout.ForPretraining(ModelPresets.Config(preset));
        Assert.That(rule.Select(Describe), Is.EqualTo(generated.Select(Describe)));
    }

    [Test]
    public void AgreesForACustomVocabulary()
    {
        var p = ModelPresets.Get("tiny");
        var generated = p.TableFor(8000);
        var rule = ParameterLayout.ForPretraining(p.Config with { VocabSize = 8000 });
        Assert.That(rule.Select(Describe), Is.EqualTo(generated.Select(Describe)));
    }

    private static string Describe(ParameterInfo p) => $"{p.Name} {p.ShapeText} @{p.Offset} {p.Init} decay={p.Decay}";
}
