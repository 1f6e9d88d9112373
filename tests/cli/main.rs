//! End-to-end tests of the binary: files in, rows, counters and exit codes out.

mod file_server;
mod generated;
mod stand_in;
mod support;
mod tmux;

mod api;
mod catalog;
mod catalog_entities;
mod completions;
mod dialects;
mod duplicates;
mod entities;
mod exports;
mod fidelity;
mod flexprice;
mod fuzz;
mod help;
mod import;
mod locks;
mod messages;
mod postgres_entities;
mod postgres_runs;
mod postgres_store;
mod progress;
mod readme;
mod real_files;
mod reliability;
mod scripting;
mod signals;
mod sources;
mod tasks;
mod values;
mod verify;
mod workers;
