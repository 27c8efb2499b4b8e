//! What `sesame env` writes to standard output: [`emit`] and its `say!`/`say_raw!` macros (a closed pipe ends the
//! process quietly with 141), tables, and an environment's `environmentVariables` as dotenv or shell lines. Only
//! what the user asked for goes to stdout; warnings and notes go to stderr.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;

use crate::core::env::project;
use crate::core::env::value::Value;

/// Writes to standard output. A closed pipe (`sesame env ls | head`) ends the process quietly with 141, as a process
/// killed by SIGPIPE would; any other write error ends it with 1.
pub(super) fn emit(args: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: writing standard output: {e}");
        std::process::exit(1);
    }
}

/// `println!` through [`emit`].
macro_rules! say {
    ($($t:tt)*) => {
        $crate::cli::env::output::emit(format_args!("{}\n", format_args!($($t)*)))
    };
}

/// `print!` through [`emit`].
macro_rules! say_raw {
    ($($t:tt)*) => {
        $crate::cli::env::output::emit(format_args!($($t)*))
    };
}

pub(super) use {say, say_raw};

/// Prints rows under a header, columns padded to their widest cell.
pub(super) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (n, cell) in cells.iter().enumerate() {
            if n == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[n]));
            }
        }
        say!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// The `environmentVariables` among `properties` as lines to load, each passed to `line`: `NAME=value` (dotenv
/// quoting), or `export NAME=value` (POSIX shell quoting) when `shell`. Secrets are withheld unless `reveal`. Names
/// that are not variable names, and withheld values, are reported on stderr.
pub(super) fn variable_lines(
    properties: &BTreeMap<String, Value>,
    reveal: bool,
    shell: bool,
    mut line: impl FnMut(String),
) {
    let (vars, bad) = project::environment_variables(properties, reveal);
    for b in bad {
        eprintln!("warning: environmentVariables.{b}: not a valid variable name; skipped");
    }
    for v in vars {
        match &v.value {
            Some(val) if shell => line(format!("export {}={}", v.name, project::shell_quote(val))),
            Some(val) => line(format!("{}={}", v.name, project::dotenv_quote(val))),
            None => eprintln!("note: {} withheld: {}", v.name, v.why_withheld.unwrap_or("withheld")),
        }
    }
}
