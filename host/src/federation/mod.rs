//! Federation: per-remote health with circuit breaking, and the endpoint
//! selected per repository (logical promotion; git config is never changed).
