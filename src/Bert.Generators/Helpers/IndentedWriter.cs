using System;
using System.Text;

namespace Bert.Generators.Helpers;

/// <summary>
/// Writes C# text line by line at an indentation level, with "\n" line endings whatever the host, so
/// the emitted source (and its snapshot) is the same on every machine.
/// </summary>
internal sealed class IndentedWriter
{
    private const string IndentUnit = "    ";
    private readonly StringBuilder _text = new();
    private int _level;

    public void Line(string text = "")
    {
        if (text.Length > 0)
        {
            for (int i = 0; i < _level; i++) _text.Append(IndentUnit);
            _text.Append(text);
        }
        _text.Append('\n');
    }

    /// <summary>Writes several lines (split on '\n') at the current level.</summary>
    public void Lines(string text)
    {
        foreach (var line in text.Split('\n')) Line(line);
    }

    public void Indent() => _level++;

    public void Outdent()
    {
        if (_level == 0) throw new InvalidOperationException("indentation below zero");
        _level--;
    }

    /// <summary>Writes <paramref name="header"/>, an opening brace, and indents until the scope is disposed.</summary>
    public Scope Block(string header, string close = "}")
    {
        Line(header);
        Line("{");
        Indent();
        return new Scope(this, close);
    }

    public override string ToString() => _text.ToString();

    public readonly struct Scope(IndentedWriter writer, string close) : IDisposable
    {
        public void Dispose()
        {
            writer.Outdent();
            writer.Line(close);
        }
    }
}
