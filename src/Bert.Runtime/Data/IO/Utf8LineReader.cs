using System.Buffers;
using System.Text;
using System.Text.Unicode;

namespace Bert.Runtime.Data;

/// <summary>
/// Reads a UTF-8 text file line by line without allocating per line. Invalid UTF-8 is an error that
/// names the file and the byte offset of the first bad byte. A leading BOM is skipped; "\r\n" and
/// "\n" both end a line.
/// </summary>
internal sealed class Utf8LineReader : IDisposable
{
    private readonly Stream _stream;
    private readonly Func<string, string, string, string, Exception> _error;
    private byte[] _bytes = new byte[1 << 20];
    private char[] _chars = new char[1 << 12];
    private int _start, _end;
    private bool _eof;
    private long _bufferOffset; // file offset of _bytes[0]

    /// <param name="path">The file; also the name used in errors.</param>
    /// <param name="error">Makes the exception for a malformed file from (path, field, value, problem).</param>
    public Utf8LineReader(string path, Func<string, string, string, string, Exception> error)
    {
        Path = path;
        _error = error;
        _stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        Fill();
        if (_end >= 3 && _bytes[0] == 0xEF && _bytes[1] == 0xBB && _bytes[2] == 0xBF) _start = 3;
    }

    public string Path { get; }

    /// <summary>1-based number of the line last returned.</summary>
    public long LineNumber { get; private set; }

    /// <summary>Byte offset of the start of the line last returned.</summary>
    public long LineOffset { get; private set; }

    /// <summary>Bytes consumed so far (for progress).</summary>
    public long Position => _bufferOffset + _start;

    public long Length => _stream.Length;

    /// <summary>The next line without its terminator; the span is valid until the next call.</summary>
    public bool TryReadLine(out ReadOnlySpan<char> line)
    {
        while (true)
        {
            int nl = _bytes.AsSpan(_start, _end - _start).IndexOf((byte)'\n');
            if (nl >= 0)
            {
                line = Decode(_start, nl);
                _start += nl + 1;
                return true;
            }
            if (_eof)
            {
                if (_start == _end)
                {
                    line = default;
                    return false;
                }
                int n = _end - _start;
                line = Decode(_start, n);
                _start = _end;
                return true;
            }
            Compact();
            Fill();
        }
    }

    private ReadOnlySpan<char> Decode(int start, int length)
    {
        LineNumber++;
        LineOffset = _bufferOffset + start;
        var bytes = _bytes.AsSpan(start, length);
        if (bytes.Length > 0 && bytes[^1] == (byte)'\r') bytes = bytes[..^1];
        if (_chars.Length < bytes.Length) _chars = new char[Math.Max(bytes.Length, _chars.Length * 2)];
        var status = Utf8.ToUtf16(bytes, _chars, out int read, out int written, replaceInvalidSequences: false);
        if (status != OperationStatus.Done)
        {
            long offset = LineOffset + read;
            throw _error(Path, $"byte {offset} (line {LineNumber})", $"0x{bytes[read]:X2}", "invalid UTF-8");
        }
        return _chars.AsSpan(0, written);
    }

    private void Compact()
    {
        int remaining = _end - _start;
        if (_start > 0)
        {
            Buffer.BlockCopy(_bytes, _start, _bytes, 0, remaining);
            _bufferOffset += _start;
            _start = 0;
            _end = remaining;
        }
        if (_end == _bytes.Length) Array.Resize(ref _bytes, _bytes.Length * 2);
    }

    private void Fill()
    {
        while (_end < _bytes.Length)
        {
            int n = _stream.Read(_bytes, _end, _bytes.Length - _end);
            if (n == 0)
            {
                _eof = true;
                return;
            }
            _end += n;
        }
    }

    public void Dispose() => _stream.Dispose();

    internal static readonly UTF8Encoding Utf8NoBom = new(false);
}
