namespace Bert.Native.Testing;

/// <summary>Stands in for the CUDA bindings' error type (any exception declared under the Bert.Native
/// namespace maps to exit code 6) until the CUDA backend lands.</summary>
public sealed class FakeCudaException(string message) : Exception(message);
