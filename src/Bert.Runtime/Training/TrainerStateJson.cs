using System.Text;
using System.Text.Json;

namespace Bert.Runtime.Training;

/// <summary>trainer-state.bin: the <see cref="TrainerState"/> as UTF-8 JSON (versioned), plus the run's
/// settings that a resume must not change (preset, steps, phases, batch sizes, schedule, seed).</summary>
public static class TrainerStateJson
{
    public const int Version = 1;

    public static byte[] Write(TrainerState state, IReadOnlyDictionary<string, string> settings)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteNumber("version", Version);
            w.WriteNumber("step", state.Step);
            w.WriteString("seed", state.Seed.ToString(System.Globalization.CultureInfo.InvariantCulture));
            w.WriteStartArray("cursors");
            foreach (var c in state.Cursors)
            {
                w.WriteStartObject();
                w.WriteString("phase", c.Phase);
                w.WriteNumber("epoch", c.Epoch);
                w.WriteNumber("position", c.Position);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartObject("settings");
            foreach (var (k, v) in settings.OrderBy(kv => kv.Key, StringComparer.Ordinal)) w.WriteString(k, v);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return ms.ToArray();
    }

    /// <exception cref="InvalidDataException">Malformed state; the message names the file and field.</exception>
    public static (TrainerState State, Dictionary<string, string> Settings) Read(ReadOnlySpan<byte> bytes, string origin)
    {
        try
        {
            using var doc = JsonDocument.Parse(bytes.ToArray());
            var r = doc.RootElement;
            int version = Get(r, "version", origin).GetInt32();
            if (version != Version)
                throw new InvalidDataException($"{origin}: field 'version' is {version}, this build reads version {Version}");
            long step = Get(r, "step", origin).GetInt64();
            if (step < 0) throw new InvalidDataException($"{origin}: field 'step' is {step}, must be non-negative");
            string seedText = Get(r, "seed", origin).GetString() ?? "";
            if (!ulong.TryParse(seedText, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out ulong seed))
                throw new InvalidDataException($"{origin}: field 'seed' is '{seedText}', not an unsigned integer");
            var cursors = new List<CursorState>();
            foreach (var c in Get(r, "cursors", origin).EnumerateArray())
            {
                var cs = new CursorState(Get(c, "phase", origin).GetString() ?? "", Get(c, "epoch", origin).GetInt64(), Get(c, "position", origin).GetInt64());
                if (cs.Epoch < 0 || cs.Position < 0)
                    throw new InvalidDataException($"{origin}: cursor of phase '{cs.Phase}' has epoch {cs.Epoch}, position {cs.Position}; must be non-negative");
                cursors.Add(cs);
            }
            var settings = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var p in Get(r, "settings", origin).EnumerateObject()) settings[p.Name] = p.Value.GetString() ?? "";
            return (new TrainerState(step, seed, cursors.ToArray()), settings);
        }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException or DecoderFallbackException)
        {
            throw new InvalidDataException($"{origin}: not a valid trainer state ({e.Message})", e);
        }
    }

    private static JsonElement Get(JsonElement e, string name, string origin) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) ? v
            : throw new InvalidDataException($"{origin}: field '{name}' is missing");
}
