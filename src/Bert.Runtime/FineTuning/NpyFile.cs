using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using Bert.Runtime.IO;

namespace Bert.Runtime.FineTuning;

/// <summary>
/// NumPy's .npy format (version 1.0) for a float32 matrix: the magic "\x93NUMPY", version bytes 1 0,
/// a little-endian u16 header length, an ASCII header dict
/// <c>{'descr': '&lt;f4', 'fortran_order': False, 'shape': (N, H), }</c> padded with spaces and a final
/// newline so the data starts at a multiple of 64 bytes, then N·H little-endian float32 values in
/// row-major order. <c>numpy.load(path)</c> reads it as an array of shape (N, H), dtype float32.
/// </summary>
public static partial class NpyFile
{
    private static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>Writes <paramref name="data"/> (F32[rows·columns], row-major) atomically.</summary>
    public static void Write(string path, ReadOnlySpan<float> data, int rows, int columns, IFileSystem? fileSystem = null)
    {
        if (rows < 0 || columns < 0 || (long)rows * columns != data.Length)
            throw new ArgumentException($"{data.Length} values do not form a {rows}×{columns} matrix", nameof(data));
        var header = Header(rows, columns);
        var bytes = new byte[header.Length + data.Length * sizeof(float)];
        header.CopyTo(bytes, 0);
        var values = bytes.AsSpan(header.Length);
        if (BitConverter.IsLittleEndian) MemoryMarshal.AsBytes(data).CopyTo(values);
        else
            for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(values[(i * 4)..], data[i]);
        AtomicFile.Write(fileSystem ?? PhysicalFileSystem.Instance, path, s => s.Write(bytes));
    }

    /// <summary>The magic, version, length and header dict of a [rows, columns] float32 file.</summary>
    public static byte[] Header(int rows, int columns)
    {
        string dict = string.Create(CultureInfo.InvariantCulture, $"{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {columns}), }}");
        int unpadded = Magic.Length + 2 + 2 + dict.Length + 1;
        int padding = (64 - unpadded % 64) % 64;
        string text = dict + new string(' ', padding) + "\n";
        var result = new byte[Magic.Length + 4 + text.Length];
        Magic.CopyTo(result);
        result[6] = 1;
        result[7] = 0;
        BinaryPrimitives.WriteUInt16LittleEndian(result.AsSpan(8), (ushort)text.Length);
        Encoding.ASCII.GetBytes(text, result.AsSpan(10));
        return result;
    }

    /// <summary>Reads a 2-D little-endian float32 C-order .npy file (version 1.0 or 2.0).</summary>
    /// <exception cref="FineTuningFormatException">Anything else.</exception>
    public static (float[] Data, int Rows, int Columns) ReadFloat32Matrix(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length < 10 || !bytes.AsSpan(0, 6).SequenceEqual(Magic))
            throw new FineTuningFormatException(path, "magic", bytes.Length < 6 ? "(short file)" : Convert.ToHexString(bytes, 0, 6), "not a .npy file");
        int major = bytes[6];
        int headerLength, headerStart;
        if (major == 1)
        {
            headerLength = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(8));
            headerStart = 10;
        }
        else if (major is 2 or 3 && bytes.Length >= 12)
        {
            headerLength = checked((int)BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8)));
            headerStart = 12;
        }
        else throw new FineTuningFormatException(path, "version", $"{major}.{bytes[7]}", "unsupported .npy version");
        if (headerStart + headerLength > bytes.Length)
            throw new FineTuningFormatException(path, "header length", headerLength.ToString(CultureInfo.InvariantCulture), "longer than the file");
        string header = Encoding.Latin1.GetString(bytes, headerStart, headerLength);
        var descr = Descr().Match(header);
        if (!descr.Success || descr.Groups[1].Value != "<f4")
            throw new FineTuningFormatException(path, "descr", descr.Success ? descr.Groups[1].Value : "(absent)", "expected little-endian float32 '<f4'");
        var fortran = Fortran().Match(header);
        if (!fortran.Success || fortran.Groups[1].Value != "False")
            throw new FineTuningFormatException(path, "fortran_order", fortran.Success ? fortran.Groups[1].Value : "(absent)", "expected C order (False)");
        var shape = Shape().Match(header);
        if (!shape.Success)
            throw new FineTuningFormatException(path, "shape", "(absent or not 2-D)", "expected a 2-D shape (N, H)");
        int rows = int.Parse(shape.Groups[1].Value, CultureInfo.InvariantCulture), columns = int.Parse(shape.Groups[2].Value, CultureInfo.InvariantCulture);
        long expected = (long)rows * columns * sizeof(float);
        int dataStart = headerStart + headerLength;
        if (bytes.Length - dataStart != expected)
            throw new FineTuningFormatException(path, "data", $"{bytes.Length - dataStart} bytes", $"shape ({rows}, {columns}) needs {expected} bytes");
        var data = new float[(long)rows * columns];
        for (int i = 0; i < data.Length; i++) data[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(dataStart + 4 * i));
        return (data, rows, columns);
    }

    [GeneratedRegex(@"'descr':\s*'([^']*)'")]
    private static partial Regex Descr();

    [GeneratedRegex(@"'fortran_order':\s*(True|False)")]
    private static partial Regex Fortran();

    [GeneratedRegex(@"'shape':\s*\(\s*(\d+)\s*,\s*(\d+)\s*,?\s*\)")]
    private static partial Regex Shape();
}
