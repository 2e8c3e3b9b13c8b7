using System.Buffers.Binary;
using System.Globalization;
using System.Numerics;
using System.Text;

namespace Bert.Runtime.Training;

/// <summary>
/// A TensorBoard event file (<c>events.out.tfevents.&lt;unix-seconds&gt;.&lt;hostname&gt;</c>) written by hand,
/// without TensorFlow: TFRecord framing around hand-encoded <c>tensorflow.Event</c> protobufs.
/// <para>
/// Record: uint64 length (little-endian), masked CRC32C of those 8 bytes, the data, masked CRC32C of the
/// data; mask(c) = ((c &gt;&gt; 15) | (c &lt;&lt; 17)) + 0xa282ead8. The first record is the
/// <c>file_version "brain.Event:2"</c> event; each <see cref="Write"/> appends one event holding all the
/// scalars of one step (<c>Summary.Value {tag, simple_value}</c>) and flushes it, so a crash loses at most
/// the record being written and never tears an earlier one (the file is only appended to).
/// </para>
/// Every start of a run opens a new file (a resumed run too, in the same directory) whose second record is a
/// <c>SessionLog START</c> at the step it starts from: the marker TensorBoard's event loader uses to drop
/// an earlier file's points at or beyond that step (purge_orphaned_data), as metrics.jsonl drops its lines.
/// </summary>
public sealed class TensorBoardWriter : IDisposable
{
    public const string FileVersion = "brain.Event:2";
    private const uint MaskDelta = 0xa282ead8;

    private readonly FileStream _stream;
    // Reused for every record: one step's event is a few hundred bytes.
    private byte[] _buffer = new byte[1024];
    private int _length;

    private TensorBoardWriter(FileStream stream)
    {
        _stream = stream;
        Path = stream.Name;
    }

    /// <summary>The event file.</summary>
    public string Path { get; }

    /// <summary>
    /// Creates <paramref name="directory"/> if needed and a new event file in it (never one that exists:
    /// a second file in the same second gets a ".2", ".3", ... suffix). <paramref name="startStep"/>: the
    /// step the run starts from (0, or the step a resumed run continues from).
    /// </summary>
    public static TensorBoardWriter Create(string directory, long startStep = 0)
    {
        Directory.CreateDirectory(directory);
        double now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;
        string baseName = string.Create(CultureInfo.InvariantCulture, $"events.out.tfevents.{(long)now:D10}.{HostName()}");
        for (int n = 1; ; n++)
        {
            string path = System.IO.Path.Combine(directory, n == 1 ? baseName : string.Create(CultureInfo.InvariantCulture, $"{baseName}.{n}"));
            FileStream stream;
            try
            {
                stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.Read);
            }
            catch (IOException) when (File.Exists(path) && n < 1000)
            {
                continue;
            }
            var writer = new TensorBoardWriter(stream);
            try
            {
                writer.WriteHeader(now, startStep);
            }
            catch
            {
                writer.Dispose();
                throw;
            }
            return writer;
        }
    }

    /// <summary>Appends one event with the scalars of <paramref name="step"/> (values are stored as float32,
    /// TensorBoard's simple_value) and flushes it to the file.</summary>
    public void Write(long step, params ReadOnlySpan<(string Tag, double Value)> scalars)
    {
        _length = 0;
        PutWallTimeAndStep(Now(), step);
        // Event.summary (5): Summary { repeated Value value = 1 { string tag = 1; float simple_value = 2 } }
        int summaryLength = 0;
        foreach (var (tag, _) in scalars) summaryLength += 1 + VarintSize((ulong)ValueSize(tag)) + ValueSize(tag);
        PutTag(5, 2);
        PutVarint((ulong)summaryLength);
        foreach (var (tag, value) in scalars)
        {
            PutTag(1, 2);
            PutVarint((ulong)ValueSize(tag));
            PutTag(1, 2);
            PutVarint((ulong)Encoding.UTF8.GetByteCount(tag));
            Ensure(Encoding.UTF8.GetByteCount(tag));
            _length += Encoding.UTF8.GetBytes(tag, _buffer.AsSpan(_length));
            PutTag(2, 5);
            Ensure(4);
            BinaryPrimitives.WriteSingleLittleEndian(_buffer.AsSpan(_length), (float)value);
            _length += 4;
        }
        WriteRecord();
    }

    private static int ValueSize(string tag)
    {
        int n = Encoding.UTF8.GetByteCount(tag);
        return 1 + VarintSize((ulong)n) + n + 1 + 4;
    }

    private void WriteHeader(double wallTime, long startStep)
    {
        _length = 0;
        PutWallTimeAndStep(wallTime, 0);
        PutTag(3, 2); // Event.file_version
        PutVarint((ulong)FileVersion.Length);
        Ensure(FileVersion.Length);
        _length += Encoding.ASCII.GetBytes(FileVersion, _buffer.AsSpan(_length));
        WriteRecord();
        _length = 0;
        PutWallTimeAndStep(wallTime, startStep);
        PutTag(7, 2); // Event.session_log (field 6 is the deprecated log_message): SessionLog { status = 1 (START) }
        PutVarint(2);
        PutTag(1, 0);
        PutVarint(1);
        WriteRecord();
    }

    private void PutWallTimeAndStep(double wallTime, long step)
    {
        PutTag(1, 1); // Event.wall_time: double
        Ensure(8);
        BinaryPrimitives.WriteDoubleLittleEndian(_buffer.AsSpan(_length), wallTime);
        _length += 8;
        PutTag(2, 0); // Event.step: int64
        PutVarint((ulong)step);
    }

    /// <summary>Frames the event in the buffer as a TFRecord, appends it and flushes (FileStream's buffer
    /// makes a record of up to 4 KB one write).</summary>
    private void WriteRecord()
    {
        Span<byte> head = stackalloc byte[12];
        BinaryPrimitives.WriteUInt64LittleEndian(head, (ulong)_length);
        BinaryPrimitives.WriteUInt32LittleEndian(head[8..], MaskedCrc32C(head[..8]));
        Span<byte> tail = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(tail, MaskedCrc32C(_buffer.AsSpan(0, _length)));
        _stream.Write(head);
        _stream.Write(_buffer, 0, _length);
        _stream.Write(tail);
        _stream.Flush();
    }

    /// <summary>CRC-32C (Castagnoli) of <paramref name="data"/>, masked as TFRecord stores it.</summary>
    public static uint MaskedCrc32C(ReadOnlySpan<byte> data)
    {
        uint crc = Crc32C(data);
        return ((crc >> 15) | (crc << 17)) + MaskDelta;
    }

    /// <summary>CRC-32C (Castagnoli, reflected, initial and final value inverted): "123456789" → 0xE3069283.
    /// BitOperations.Crc32C is the bare update step (the SSE4.2/ARMv8 instruction), so the inversions are ours.</summary>
    public static uint Crc32C(ReadOnlySpan<byte> data)
    {
        uint crc = ~0u;
        while (data.Length >= 8)
        {
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }
        foreach (byte b in data) crc = BitOperations.Crc32C(crc, b);
        return ~crc;
    }

    private void PutTag(int field, int wireType) => PutVarint((ulong)((field << 3) | wireType));

    private void PutVarint(ulong v)
    {
        Ensure(10);
        while (v >= 0x80)
        {
            _buffer[_length++] = (byte)(v | 0x80);
            v >>= 7;
        }
        _buffer[_length++] = (byte)v;
    }

    private static int VarintSize(ulong v)
    {
        int n = 1;
        while (v >= 0x80)
        {
            v >>= 7;
            n++;
        }
        return n;
    }

    private void Ensure(int bytes)
    {
        if (_length + bytes > _buffer.Length) Array.Resize(ref _buffer, Math.Max(2 * _buffer.Length, _length + bytes));
    }

    private static double Now() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;

    /// <summary>The machine name, reduced to characters safe in a file name.</summary>
    private static string HostName()
    {
        string name;
        try
        {
            name = Environment.MachineName;
        }
        catch (InvalidOperationException)
        {
            name = "localhost";
        }
        var safe = new StringBuilder(name.Length);
        foreach (char c in name) safe.Append(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_');
        return safe.Length == 0 ? "localhost" : safe.ToString();
    }

    public void Dispose() => _stream.Dispose();
}
