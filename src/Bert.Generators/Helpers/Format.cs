using System;
using System.Globalization;

namespace Bert.Generators.Helpers;

/// <summary>Culture-invariant text for values in messages and C# literals.</summary>
internal static class Format
{
    public static string Value(object? value) => value switch
    {
        null => "null",
        bool b => b ? "true" : "false",
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        IFormattable x => x.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    /// <summary>A C# float literal of the value rounded to float ("0.1f", "1E-12f").</summary>
    public static string Float(double value) => ((float)value).ToString("R", CultureInfo.InvariantCulture) + "f";

    public static string Int(long value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>A long literal with digit separators every three digits ("110_106_428").</summary>
    public static string Long(long value)
    {
        var digits = Math.Abs(value).ToString(CultureInfo.InvariantCulture);
        var text = new System.Text.StringBuilder();
        for (int i = 0; i < digits.Length; i++)
        {
            if (i > 0 && (digits.Length - i) % 3 == 0) text.Append('_');
            text.Append(digits[i]);
        }
        return (value < 0 ? "-" : "") + text;
    }

    /// <summary>A C# string literal.</summary>
    public static string String(string value) =>
        "\"" + value.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";
}
