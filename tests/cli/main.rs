//! End-to-end tests of the binary: files in, rows, counters and exit codes out.

mod support;

mod completions;
mod entities;
mod fuzz;
mod import;
mod reliability;
mod tasks;
