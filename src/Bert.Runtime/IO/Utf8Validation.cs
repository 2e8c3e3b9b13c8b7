using System.Buffers;
using System.Text;

namespace Bert.Runtime.IO;

/// <summary>UTF-8 checks for the JSON files we read. System.Text.Json validates UTF-8 only when it
/// transcodes a string, which surfaces as an InvalidOperationException far from the parse; checking
/// first turns bad bytes into a format error with an offset.</summary>
internal static class Utf8Validation
{
    /// <summary>Byte offset of the first invalid UTF-8 sequence, or −1 when the bytes are valid.</summary>
    public static int FirstInvalid(ReadOnlySpan<byte> bytes)
    {
        if (System.Text.Unicode.Utf8.IsValid(bytes)) return -1;
        int i = 0;
        while (i < bytes.Length)
        {
            if (Rune.DecodeFromUtf8(bytes[i..], out _, out int consumed) != OperationStatus.Done) return i;
            i += consumed;
        }
        return -1;
    }
}
