using Bert.Runtime.IO;
using System.Buffers.Binary;
using System.Text;

namespace Bert.Runtime.Data;

/// <summary>
/// Byte layout of one fixed-size record (little-endian), for S = sequence length, P = max predictions,
/// W = token width (2 bytes when the vocabulary has at most 65,536 tokens, else 4):
/// <code>
///   input_ids        W·S   token ids after masking, [PAD] after the input length
///   masked_positions 2·P   u16 positions in [0, length), ascending; 0 after masked_count
///   masked_ids       W·P   original ids at those positions; 0 after masked_count
///   input_length     2     u16 real tokens ([CLS] A [SEP] B [SEP])
///   masked_count     2     u16 predictions used (≤ P)
///   nsp_label        1     0 = B follows A, 1 = B is random
///   segment_bits     ⌈S/8⌉ bit i (LSB first) = token_type_id of position i
///   padding to a multiple of 8
/// </code>
/// </summary>
public readonly record struct ShardLayout(int SeqLength, int MaxPredictions, int TokenBytes)
{
    public int MaskedPositionsOffset => TokenBytes * SeqLength;
    public int MaskedIdsOffset => MaskedPositionsOffset + 2 * MaxPredictions;
    public int LengthOffset => MaskedIdsOffset + TokenBytes * MaxPredictions;
    public int MaskedCountOffset => LengthOffset + 2;
    public int NspOffset => MaskedCountOffset + 2;
    public int SegmentBitsOffset => NspOffset + 1;
    public int RecordSize => (SegmentBitsOffset + (SeqLength + 7) / 8 + 7) & ~7;

    /// <summary>2 when every id fits in a u16, else 4.</summary>
    public static int TokenBytesFor(int vocabSize) => vocabSize <= 65536 ? 2 : 4;

    public int ReadToken(ReadOnlySpan<byte> record, int offset) =>
        TokenBytes == 2 ? BinaryPrimitives.ReadUInt16LittleEndian(record[offset..]) : BinaryPrimitives.ReadInt32LittleEndian(record[offset..]);

    public void WriteToken(Span<byte> record, int offset, int id)
    {
        if (TokenBytes == 2) BinaryPrimitives.WriteUInt16LittleEndian(record[offset..], (ushort)id);
        else BinaryPrimitives.WriteInt32LittleEndian(record[offset..], id);
    }
}

/// <summary>
/// The 80-byte shard header (little-endian):
/// <code>
///    0  magic "BERTSHRD"        40  record_size u32
///    8  version u32 (1)         44  flags u32 (bit 0: whole-word masking)
///   12  header_size u32 (80)    48  record_count u64
///   16  vocab_hash u64          56  records_checksum u64 (XXH64 of all record bytes)
///   24  vocab_size u32          64  reserved u64 (0)
///   28  seq_length u32          72  header_checksum u64 (XXH64 of bytes 0..72)
///   32  max_predictions u32
///   36  token_bytes u32 (2|4)   80  records
/// </code>
/// </summary>
public readonly record struct ShardHeader(ulong VocabHash, int VocabSize, int SeqLength, int MaxPredictions, int TokenBytes,
    int Flags, long RecordCount, ulong RecordsChecksum)
{
    public const int Size = 80;
    public const int CurrentVersion = 1;
    public const int FlagWholeWordMask = 1;
    public static ReadOnlySpan<byte> Magic => "BERTSHRD"u8;

    public ShardLayout Layout => new(SeqLength, MaxPredictions, TokenBytes);

    public void WriteTo(Span<byte> h)
    {
        h[..Size].Clear();
        Magic.CopyTo(h);
        BinaryPrimitives.WriteInt32LittleEndian(h[8..], CurrentVersion);
        BinaryPrimitives.WriteInt32LittleEndian(h[12..], Size);
        BinaryPrimitives.WriteUInt64LittleEndian(h[16..], VocabHash);
        BinaryPrimitives.WriteInt32LittleEndian(h[24..], VocabSize);
        BinaryPrimitives.WriteInt32LittleEndian(h[28..], SeqLength);
        BinaryPrimitives.WriteInt32LittleEndian(h[32..], MaxPredictions);
        BinaryPrimitives.WriteInt32LittleEndian(h[36..], TokenBytes);
        BinaryPrimitives.WriteInt32LittleEndian(h[40..], Layout.RecordSize);
        BinaryPrimitives.WriteInt32LittleEndian(h[44..], Flags);
        BinaryPrimitives.WriteInt64LittleEndian(h[48..], RecordCount);
        BinaryPrimitives.WriteUInt64LittleEndian(h[56..], RecordsChecksum);
        BinaryPrimitives.WriteUInt64LittleEndian(h[72..], XxHash64.Hash(h[..72]));
    }

    /// <summary>Parses and validates a header against the file's length. Every field is checked
    /// before it is used, so a damaged header can never cause a large allocation or a read past
    /// the end of the file.</summary>
    public static ShardHeader Read(ReadOnlySpan<byte> h, long fileLength, string path)
    {
        if (fileLength < Size || h.Length < Size)
            throw new ShardFormatException(path, "file length", fileLength.ToString(), $"shorter than the {Size}-byte header (truncated or not a shard)");
        if (!h[..8].SequenceEqual(Magic))
            throw new ShardFormatException(path, "magic", Printable(h[..8]), "not a Bert shard (expected \"BERTSHRD\")");
        int version = BinaryPrimitives.ReadInt32LittleEndian(h[8..]);
        ulong stored = BinaryPrimitives.ReadUInt64LittleEndian(h[72..]);
        ulong actual = XxHash64.Hash(h[..72]);
        if (stored != actual && version != CurrentVersion)
            throw new ShardFormatException(path, "version", version.ToString(), $"unsupported shard version, or a corrupted header (this build reads version {CurrentVersion})");
        if (stored != actual)
            throw new ShardFormatException(path, "header checksum", $"0x{stored:x16}", $"does not match the header (0x{actual:x16}): the header is corrupted");
        if (version != CurrentVersion)
            throw new ShardFormatException(path, "version", version.ToString(), $"unsupported shard version (this build reads version {CurrentVersion})");
        int headerSize = BinaryPrimitives.ReadInt32LittleEndian(h[12..]);
        if (headerSize != Size)
            throw new ShardFormatException(path, "header_size", headerSize.ToString(), $"expected {Size}");
        var header = new ShardHeader(
            BinaryPrimitives.ReadUInt64LittleEndian(h[16..]),
            BinaryPrimitives.ReadInt32LittleEndian(h[24..]),
            BinaryPrimitives.ReadInt32LittleEndian(h[28..]),
            BinaryPrimitives.ReadInt32LittleEndian(h[32..]),
            BinaryPrimitives.ReadInt32LittleEndian(h[36..]),
            BinaryPrimitives.ReadInt32LittleEndian(h[44..]),
            BinaryPrimitives.ReadInt64LittleEndian(h[48..]),
            BinaryPrimitives.ReadUInt64LittleEndian(h[56..]));
        if (header.SeqLength is < 8 or > 65535)
            throw new ShardFormatException(path, "seq_length", header.SeqLength.ToString(), "must be in [8, 65535]");
        if (header.MaxPredictions < 1 || header.MaxPredictions > header.SeqLength)
            throw new ShardFormatException(path, "max_predictions", header.MaxPredictions.ToString(), $"must be in [1, seq_length = {header.SeqLength}]");
        if (header.TokenBytes is not (2 or 4))
            throw new ShardFormatException(path, "token_bytes", header.TokenBytes.ToString(), "must be 2 or 4");
        if (header.VocabSize < 5 || (header.TokenBytes == 2 && header.VocabSize > 65536))
            throw new ShardFormatException(path, "vocab_size", header.VocabSize.ToString(), $"invalid for {header.TokenBytes}-byte token ids");
        int recordSize = BinaryPrimitives.ReadInt32LittleEndian(h[40..]);
        if (recordSize != header.Layout.RecordSize)
            throw new ShardFormatException(path, "record_size", recordSize.ToString(), $"expected {header.Layout.RecordSize} for seq_length {header.SeqLength}, max_predictions {header.MaxPredictions}, token_bytes {header.TokenBytes}");
        long body = fileLength - Size;
        if (header.RecordCount < 0 || body % recordSize != 0 || body / recordSize != header.RecordCount)
            throw new ShardFormatException(path, "record_count", header.RecordCount.ToString(),
                $"the file holds {body} bytes of records, which is {(double)body / recordSize:0.###} records of {recordSize} bytes (truncated or extended)");
        return header;
    }

    private static string Printable(ReadOnlySpan<byte> bytes)
    {
        var sb = new StringBuilder("\"");
        foreach (byte b in bytes) sb.Append(b is >= 32 and < 127 ? ((char)b).ToString() : $"\\x{b:X2}");
        return sb.Append('"').ToString();
    }
}

/// <summary>What <see cref="ShardReader.Read"/> returns beside the arrays it fills.</summary>
/// <param name="Length">Real tokens in the instance ([CLS] A [SEP] B [SEP]).</param>
/// <param name="MaskedCount">Masked-LM predictions.</param>
/// <param name="NspLabel">0 = B is the actual next segment, 1 = B is random.</param>
public readonly record struct InstanceInfo(int Length, int MaskedCount, int NspLabel);
