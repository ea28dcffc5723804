//! Errors of the engine.

/// Loading or preparing a component failed. Messages name what was wrong so that a deploy
/// can report it to the user verbatim.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The bytes are not a WebAssembly component (a core module, or garbage).
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// Cranelift refused the component (invalid or unsupported wasm).
    #[error("component failed to compile: {0}")]
    Compile(String),
    /// The component imports an interface this host does not provide.
    #[error("component imports something Nimbus does not provide: {0}")]
    MissingImport(String),
    /// The component does not export the `wasi:http/proxy` world.
    #[error(
        "component does not export `wasi:http/incoming-handler` (it must target the \
         `wasi:http/proxy` world): {0}"
    )]
    WrongWorld(String),
    /// The component could not be instantiated under its function's limits.
    #[error("component cannot be instantiated with this function's limits: {0}")]
    Instantiate(String),
    /// The artifact cache could not be read or written.
    #[error("artifact cache at {path}: {source}")]
    Cache {
        /// The file or directory involved.
        path: std::path::PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A released function could not be loaded again.
    #[error("function could not be activated: {0}")]
    Activate(String),
    /// The wasmtime engine could not be configured.
    #[error("engine setup: {0}")]
    Setup(String),
}

/// One invocation failed. The gateway maps each kind to an HTTP status; the message is for
/// the platform log, never for the client (it can contain guest internals).
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The wall-clock timeout passed before the function responded.
    #[error("function exceeded its timeout of {0} ms")]
    Timeout(u64),
    /// The function used up its CPU budget and was interrupted.
    #[error("function exceeded its CPU budget of {0} ms")]
    CpuBudget(u64),
    /// The guest trapped (unreachable, out-of-bounds, stack overflow, …).
    #[error("function trapped: {0}")]
    Trap(String),
    /// The guest returned without setting a response.
    #[error("function returned without sending a response")]
    NoResponse,
    /// The guest set an error instead of a response.
    #[error("function responded with an error: {0}")]
    GuestError(String),
    /// The function's app already has its whole instance budget in use (see
    /// `EngineConfig::max_instances_per_app`); retry later.
    #[error("the app is at its limit of {0} instances running at once")]
    AppAtCapacity(usize),
    /// Instantiation failed (for example: the instance pool is exhausted).
    #[error("could not instantiate function: {0}")]
    Instantiate(String),
}
