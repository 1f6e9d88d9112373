//! End-to-end tests of the binary: files in, rows, counters and exit codes out.

mod stand_in;
mod support;

mod completions;
mod entities;
mod flexprice;
mod fuzz;
mod import;
mod reliability;
mod tasks;
