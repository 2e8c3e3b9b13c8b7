using System.Buffers;
using System.Text;
using System.Text.Unicode;

namespace Bert.Runtime.Data;

/// <summary>
/// Reads a UTF-8 text file line by line without allocating per line. Invalid UTF-8 is an error that
/// names the file and the byte offset of the first bad byte. A leading BOM is skipped; "\r\n" and
/// "\n" both end a line. A file whose name ends in .gz is decompressed as it is read (gzip; offsets in
/// errors are then of the decompressed text, <see cref="Position"/> and <see cref="Length"/> of the file).
/// Memory is bounded: a line longer than <see cref="MaxLineBytes"/> is an error, not a buffer that grows.
/// </summary>
internal sealed class Utf8LineReader : IDisposable
{
    /// <summary>Longest line accepted (64 MiB): a larger one is almost surely not text.</summary>
    public const int MaxLineBytes = 64 << 20;

    private readonly Stream _stream;
    private readonly FileStream _file;
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
        _file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? 1 << 16 : 1,
            FileOptions.SequentialScan);
        _stream = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase)
            ? new System.IO.Compression.GZipStream(_file, System.IO.Compression.CompressionMode.Decompress)
            : _file;
        Fill();
        if (_end >= 3 && _bytes[0] == 0xEF && _bytes[1] == 0xBB && _bytes[2] == 0xBF) _start = 3;
    }

    public string Path { get; }

    /// <summary>1-based number of the line last returned.</summary>
    public long LineNumber { get; private set; }

    /// <summary>Byte offset of the start of the line last returned.</summary>
    public long LineOffset { get; private set; }

    /// <summary>Bytes of the file consumed so far (for progress; for a .gz file, compressed bytes read).</summary>
    public long Position => ReferenceEquals(_stream, _file) ? _bufferOffset + _start : _file.Position;

    /// <summary>Bytes of the file.</summary>
    public long Length => _file.Length;

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
        if (_end == _bytes.Length)
        {
            if (_bytes.Length >= MaxLineBytes)
                throw _error(Path, $"line {LineNumber + 1}", $"more than {MaxLineBytes >> 20} MiB", "a line this long is not text in the expected format");
            Array.Resize(ref _bytes, _bytes.Length * 2);
        }
    }

    private void Fill()
    {
        while (_end < _bytes.Length)
        {
            int n;
            try
            {
                n = _stream.Read(_bytes, _end, _bytes.Length - _end);
            }
            catch (InvalidDataException e) when (!ReferenceEquals(_stream, _file))
            {
                throw _error(Path, $"gzip data after byte {_bufferOffset + _end} of the text", "(corrupt)", "not a valid gzip file: " + e.Message);
            }
            if (n == 0)
            {
                _eof = true;
                return;
            }
            _end += n;
        }
    }

    public void Dispose()
    {
        _stream.Dispose();
        _file.Dispose();
    }

    internal static readonly UTF8Encoding Utf8NoBom = new(false);
}
