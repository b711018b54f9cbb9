//! Resource telemetry and pressure: load, free memory and free disk, the
//! pressure level and the number of parallel lanes it allows.
