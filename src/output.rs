//! Command output on stdout. `println!` panics when the reader has gone away
//! (`scopegate check | head`); these end the command the way Unix tools do instead: quietly,
//! with the status a shell reports for SIGPIPE.

use std::fmt;
use std::io::{ErrorKind, Write};

/// What a shell reports for a command killed by SIGPIPE (128 + 13).
const BROKEN_PIPE_STATUS: i32 = 141;

/// Writes `args` to stdout. A closed reader ends the process with status 141; any other
/// write error is reported on stderr and ends it with status 1 (output was lost).
pub fn emit(args: fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    let result = stdout.write_fmt(args).and_then(|()| stdout.flush());
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::BrokenPipe => std::process::exit(BROKEN_PIPE_STATUS),
        Err(e) => {
            eprintln!("scopegate: cannot write to stdout: {e}");
            std::process::exit(1);
        }
    }
}

/// `print!` through [`emit`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::emit(format_args!($($arg)*)) };
}

/// `println!` through [`emit`].
#[macro_export]
macro_rules! outln {
    () => { $crate::output::emit(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::emit(format_args!("{}\n", format_args!($($arg)*))) };
}
