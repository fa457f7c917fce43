//! What every profile says about when it was taken: start time, duration and comments.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rprof_proto::ProfileBuilder;

/// Writes the window a profile covers, and its free-text comments (`go tool pprof -comments`).
pub(crate) fn describe(
    builder: &mut ProfileBuilder,
    start: SystemTime,
    duration: Duration,
    comments: &[String],
) {
    builder.set_time_nanos(unix_nanos(start));
    builder.set_duration_nanos(i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX));
    for comment in comments {
        builder.add_comment(comment);
    }
}

fn unix_nanos(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
