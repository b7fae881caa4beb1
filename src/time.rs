//! Wall-clock time as the records keep it.

/// Seconds since the Unix epoch (the time stamp of every record).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
