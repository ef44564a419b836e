//! The `/proc` parsers, on captured text and on this process.

use crate::process::{
    boot_time, max_open_files, read_self, resident_bytes, stat_fields, StatFields,
};

#[test]
fn stat_fields_are_counted_after_the_command_name_even_with_spaces_and_parens_in_it() {
    let stat = "4242 (orch (x) y) S 1 4242 4242 0 -1 4194560 1234 0 5 0 \
                250 75 0 0 20 0 9 0 123456 987654321 2048 18446744073709551615";
    assert_eq!(
        stat_fields(stat),
        Some(StatFields {
            utime: 250,
            stime: 75,
            start_ticks: 123456,
            vsize: 987654321,
        })
    );
    assert_eq!(stat_fields("4242 (orch) S 1 2"), None);
    assert_eq!(stat_fields("no parenthesis"), None);
}

#[test]
fn limits_status_and_boot_time_are_read_from_their_lines() {
    let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                  Max processes             127431               127431               processes \n\
                  Max open files            1024                 524288               files     \n";
    assert_eq!(max_open_files(limits), Some(1024));
    assert_eq!(max_open_files("Max processes 1 1 processes\n"), None);
    assert_eq!(
        resident_bytes("Name:\torch\nVmRSS:\t   20480 kB\nThreads:\t9\n"),
        Some(20 * 1024 * 1024)
    );
    assert_eq!(resident_bytes("Name:\torch\n"), None);
    assert_eq!(
        boot_time("cpu  1 2 3\nbtime 1764820000\nprocesses 9\n"),
        Some(1_764_820_000.0)
    );
    assert_eq!(boot_time("cpu  1 2 3\n"), None);
}

#[test]
fn this_process_reads_as_alive_with_memory_and_open_files() {
    let sample = read_self().expect("linux has /proc");
    assert!(sample.resident_bytes > 1024 * 1024, "{sample:?}");
    assert!(sample.virtual_bytes >= sample.resident_bytes, "{sample:?}");
    assert!(sample.open_fds >= 3, "stdin, stdout and stderr: {sample:?}");
    assert!(
        sample.max_fds.is_some_and(|max| max >= sample.open_fds),
        "{sample:?}"
    );
    let started = sample.start_time_seconds.expect("btime");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    assert!(
        started <= now + 1.0 && started > now - 86_400.0,
        "{started} vs {now}"
    );
}
