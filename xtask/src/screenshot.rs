//! `cargo xtask screenshot`: regenerates `docs/board.png` with the board's browser test.
//!
//! The picture is the one the end-to-end test takes (orch on the simulators, tasks in every
//! column, headless Chromium), so the docs show what the test checked. It needs `chromium`
//! and `chromium-driver` installed, as `.ci/run` does.

use std::fs;
use std::path::Path;

use crate::process::{self, cargo};
use crate::Result;

/// Where the screenshot goes, from the workspace root.
const SCREENSHOT: &str = "docs/board.png";

/// The browser test that takes it.
const TEST: &str = "board::the_board_in_chromium_shows_every_column_updates_live_and_retries";

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

pub(crate) fn run(root: &Path) -> Result<()> {
    let target = root.join(SCREENSHOT);
    let fresh = root.join("docs/board.png.new");
    let _ = fs::remove_file(&fresh);
    // The test runs the `orch` binary for the scripted agent.
    process::run(cargo(root).args(["build", "-p", "orch-daemon"]))?;
    process::run(
        cargo(root)
            .args([
                "test", "-p", "orch-e2e", "--test", "e2e", TEST, "--", "--exact",
            ])
            .env("RUN_SLOW_TESTS", "1")
            .env("ORCH_BOARD_SCREENSHOT", &fresh),
    )?;
    let bytes = fs::read(&fresh)
        .map_err(|err| format!("the test wrote no screenshot to {}: {err}", fresh.display()))?;
    if !bytes.starts_with(PNG_MAGIC) {
        return Err(format!("{} is not a PNG", fresh.display()).into());
    }
    fs::rename(&fresh, &target)
        .map_err(|err| format!("cannot move the screenshot to {}: {err}", target.display()))?;
    println!("screenshot: wrote {SCREENSHOT} ({} bytes)", bytes.len());
    Ok(())
}
