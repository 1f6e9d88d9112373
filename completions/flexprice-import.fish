# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_flexprice_import_global_optspecs
    string join \n db= tenant= actor= q/quiet progress= lock-timeout= h/help V/version
end

function __fish_flexprice_import_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_flexprice_import_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_flexprice_import_using_subcommand
    set -l cmd (__fish_flexprice_import_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -l db -d 'The task store: a SQLite file, or a PostgreSQL database as postgres://user:password@host:5432/dbname (every command works on both) [default: $XDG_DATA_HOME/flexprice-import/store.db, ~/.local/share/flexprice-import/store.db on Linux]' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -l tenant -d 'The tenant whose tasks and records these are' -r
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -l actor -d 'Who is acting, recorded as created_by/updated_by [default: the OS user]' -r
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -l progress -d 'When to draw a progress bar on stderr' -r -f -a "auto\t'Only when stderr is a terminal (and not with --quiet, --json, TERM=dumb or CI)'
always\t'Also into a pipe or log: a plain progress line every 2 s'
never\t'No progress at all'"
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -l lock-timeout -d 'How long a write waits while another process holds the store\'s write lock (it says so after a moment), before giving up (e.g. 30s, 2m)' -r
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -s q -l quiet -d 'Print nothing but data (task ids, JSON, tables) and errors'
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -s V -l version -d 'Print version'
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -f -a "create" -d 'Record an import task as PENDING and print its id'
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -f -a "run" -d 'Run a PENDING or FAILED task, or create one for a file and run it at once'
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -f -a "resume" -d 'Continue every task left interrupted: PROCESSING by a process that died, or stopped by Ctrl-C/SIGTERM'
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -f -a "list" -d 'List tasks, newest first'
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -f -a "inspect" -d 'Show one task in detail: progress, counters, timings and its first rejected rows'
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -f -a "errors" -d 'Write a task\'s rejected rows as a file in the input\'s format, with `line` and `reason` columns added, ready to fix and import again'
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -f -a "verify" -d 'Read back from the FlexPrice server every record a task delivered and report those found, missing and different (FlexPrice answers 202 even when it loses events)'
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -f -a "templates" -d 'Print a header-only CSV template, or an example JSON record, for an entity'
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -f -a "worker" -d 'Run queued tasks: claim PENDING ones (and those whose worker died) with a lease, and deliver pending webhooks; `--once` drains the queue and exits (cron)'
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -f -a "serve" -d 'Serve the HTTP task API (create, get, list tasks, their rejected rows) with workers inside'
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -f -a "export" -d 'Export an entity from the local store, or from a FlexPrice server, as an EXPORT task, in the format import reads'
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -f -a "catalog" -d 'Import or export a whole catalog (features, prices, customers, …) as a folder with one file per entity, in dependency order'
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -f -a "archive" -d 'Hide tasks from `list` (`list --all` shows them); `--undo` shows them again'
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -f -a "prune" -d 'Delete finished tasks older than an age, with their rejected rows and checkpoints (never the records they imported)'
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -f -a "completions" -d 'Print a shell completion script (the scripts are also in completions/)'
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -f -a "man" -d 'Print the manual page, as roff (`man -l -` reads it)'
complete -c flexprice-import -n "__fish_flexprice_import_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand create" -l entity -d 'What the file holds [default: from the file name (prices_2026.csv), else events]' -r -f -a "events\t''
prices\t''
customers\t''
features\t''
plans\t''
addons\t''
entitlements\t''
subscriptions\t''"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand create" -l format -d 'The file\'s format [default: from its extension: .csv, .tsv, .json, .jsonl/.ndjson]' -r -f -a "csv\t''
json\t'A JSON array of objects (or objects one after another)'
jsonl\t'One JSON object per line (also .ndjson)'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand create" -l delimiter -d 'CSV: the character between fields: , ; tab (or \\t) or | [default: , and a tab for .tsv]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand create" -l encoding -d 'The file\'s text encoding, a WHATWG label such as windows-1252, latin1, utf-16le, shift_jis [default: UTF-8, or UTF-16/UTF-32 when a byte-order mark says so]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand create" -l map -d 'Read the input column (or JSON key) SOURCE as the entity\'s field FIELD (repeatable)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand create" -l property-type -d 'Events: read property KEY as string, integer, decimal or boolean; a row where it is not is rejected, and numbers are stored as JSON numbers (repeatable)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand create" -l target -d 'Where records go [default: local]' -r -f -a "local\t'This tool\'s own store (no server needed)'
flexprice\t'A FlexPrice server, through its HTTP API'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand create" -l api-url -d 'The FlexPrice server\'s base URL, e.g. https://api.example.com (for --target flexprice)' -r -f
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand create" -l environment-id -d 'The FlexPrice environment to write to (sent as X-Environment-ID)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand create" -l webhook-url -d 'Send the task\'s webhooks (task.started, task.completed, task.failed) to URL, signed with FLEXPRICE_WEBHOOK_SECRET (Standard Webhooks)' -r -f
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand create" -l webhook-progress -d 'Also send task.progress, at most this often (e.g. 30s)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand create" -l db -d 'The task store: a SQLite file, or a PostgreSQL database as postgres://user:password@host:5432/dbname (every command works on both) [default: $XDG_DATA_HOME/flexprice-import/store.db, ~/.local/share/flexprice-import/store.db on Linux]' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand create" -l tenant -d 'The tenant whose tasks and records these are' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand create" -l actor -d 'Who is acting, recorded as created_by/updated_by [default: the OS user]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand create" -l progress -d 'When to draw a progress bar on stderr' -r -f -a "auto\t'Only when stderr is a terminal (and not with --quiet, --json, TERM=dumb or CI)'
always\t'Also into a pipe or log: a plain progress line every 2 s'
never\t'No progress at all'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand create" -l lock-timeout -d 'How long a write waits while another process holds the store\'s write lock (it says so after a moment), before giving up (e.g. 30s, 2m)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand create" -l json -d 'Print the whole task as JSON instead of its id'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand create" -s q -l quiet -d 'Print nothing but data (task ids, JSON, tables) and errors'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand create" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l batch-size -d 'Local target: records per store transaction (and per progress update) [default: 100000]. Flexprice target: records per bulk request [default and most: 1000 events, 100 prices]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l progress-interval -d 'Commit what has been read and update progress at least this often (e.g. 30s, 2m)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l max-errors -d 'Stop, and fail the task, once more than N rows are rejected' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l max-error-rate -d 'Stop, and fail the task, once more than this fraction of rows is rejected (0.0 to 1.0; checked once 1,000 rows are read, and at the end)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l webhook-wait -d 'How long to keep retrying the task\'s webhooks when the run ends; what still fails is left to `worker`' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l errors-file -d 'Write the rejected rows to PATH when the run ends (as the `errors` command does)' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l entity -d 'What the file holds [default: from the file name (prices_2026.csv), else events]' -r -f -a "events\t''
prices\t''
customers\t''
features\t''
plans\t''
addons\t''
entitlements\t''
subscriptions\t''"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l format -d 'The file\'s format [default: from its extension: .csv, .tsv, .json, .jsonl/.ndjson]' -r -f -a "csv\t''
json\t'A JSON array of objects (or objects one after another)'
jsonl\t'One JSON object per line (also .ndjson)'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l delimiter -d 'CSV: the character between fields: , ; tab (or \\t) or | [default: , and a tab for .tsv]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l encoding -d 'The file\'s text encoding, a WHATWG label such as windows-1252, latin1, utf-16le, shift_jis [default: UTF-8, or UTF-16/UTF-32 when a byte-order mark says so]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l map -d 'Read the input column (or JSON key) SOURCE as the entity\'s field FIELD (repeatable)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l property-type -d 'Events: read property KEY as string, integer, decimal or boolean; a row where it is not is rejected, and numbers are stored as JSON numbers (repeatable)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l target -d 'Where records go [default: local]' -r -f -a "local\t'This tool\'s own store (no server needed)'
flexprice\t'A FlexPrice server, through its HTTP API'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l api-url -d 'The FlexPrice server\'s base URL, e.g. https://api.example.com (for --target flexprice)' -r -f
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l environment-id -d 'The FlexPrice environment to write to (sent as X-Environment-ID)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l webhook-url -d 'Send the task\'s webhooks (task.started, task.completed, task.failed) to URL, signed with FLEXPRICE_WEBHOOK_SECRET (Standard Webhooks)' -r -f
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l webhook-progress -d 'Also send task.progress, at most this often (e.g. 30s)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l api-key -d 'The FlexPrice API key (sent as x-api-key; never stored, logged or printed)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l concurrency -d 'Requests to the FlexPrice server in flight at once' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l max-retries -d 'Times a request is sent again after a transient failure (429, 408, 5xx, timeout, lost connection) before its rows count as failed' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l request-timeout -d 'Time limit of one request to the FlexPrice server' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l db -d 'The task store: a SQLite file, or a PostgreSQL database as postgres://user:password@host:5432/dbname (every command works on both) [default: $XDG_DATA_HOME/flexprice-import/store.db, ~/.local/share/flexprice-import/store.db on Linux]' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l tenant -d 'The tenant whose tasks and records these are' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l actor -d 'Who is acting, recorded as created_by/updated_by [default: the OS user]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l progress -d 'When to draw a progress bar on stderr' -r -f -a "auto\t'Only when stderr is a terminal (and not with --quiet, --json, TERM=dumb or CI)'
always\t'Also into a pipe or log: a plain progress line every 2 s'
never\t'No progress at all'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l lock-timeout -d 'How long a write waits while another process holds the store\'s write lock (it says so after a moment), before giving up (e.g. 30s, 2m)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l dry-run -d 'Validate every row and write nothing but the task and its rejected rows'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -l json -d 'Print the final task as JSON on stdout instead of its id'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -s q -l quiet -d 'Print nothing but data (task ids, JSON, tables) and errors'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand resume" -l webhook-wait -d 'How long to keep retrying each task\'s webhooks when it ends' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand resume" -l api-key -d 'The FlexPrice API key (sent as x-api-key; never stored, logged or printed)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand resume" -l concurrency -d 'Requests to the FlexPrice server in flight at once' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand resume" -l max-retries -d 'Times a request is sent again after a transient failure (429, 408, 5xx, timeout, lost connection) before its rows count as failed' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand resume" -l request-timeout -d 'Time limit of one request to the FlexPrice server' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand resume" -l db -d 'The task store: a SQLite file, or a PostgreSQL database as postgres://user:password@host:5432/dbname (every command works on both) [default: $XDG_DATA_HOME/flexprice-import/store.db, ~/.local/share/flexprice-import/store.db on Linux]' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand resume" -l tenant -d 'The tenant whose tasks and records these are' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand resume" -l actor -d 'Who is acting, recorded as created_by/updated_by [default: the OS user]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand resume" -l progress -d 'When to draw a progress bar on stderr' -r -f -a "auto\t'Only when stderr is a terminal (and not with --quiet, --json, TERM=dumb or CI)'
always\t'Also into a pipe or log: a plain progress line every 2 s'
never\t'No progress at all'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand resume" -l lock-timeout -d 'How long a write waits while another process holds the store\'s write lock (it says so after a moment), before giving up (e.g. 30s, 2m)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand resume" -l json -d 'Print each finished task on stdout as one line of JSON (JSON Lines)'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand resume" -s q -l quiet -d 'Print nothing but data (task ids, JSON, tables) and errors'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand resume" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand list" -l task-type -d 'Only import or only export tasks' -r -f -a "import\t''
export\t''"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand list" -l entity -d 'Only tasks of this entity' -r -f -a "events\t''
prices\t''
customers\t''
features\t''
plans\t''
addons\t''
entitlements\t''
subscriptions\t''"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand list" -l status -d 'Only tasks with this status (a PROCESSING task whose process died is shown as interrupted)' -r -f -a "pending\t''
processing\t''
completed\t''
failed\t''"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand list" -l created-by -d 'Only tasks created by this actor (see --actor)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand list" -l since -d 'Created at or after: an RFC 3339 time, a date (2026-11-01) or an age (24h, 7d)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand list" -l until -d 'Created before: an RFC 3339 time, a date or an age' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand list" -l limit -d 'Show at most N tasks (1 to 1000)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand list" -l offset -d 'Skip the first N matching tasks (for the next page)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand list" -l db -d 'The task store: a SQLite file, or a PostgreSQL database as postgres://user:password@host:5432/dbname (every command works on both) [default: $XDG_DATA_HOME/flexprice-import/store.db, ~/.local/share/flexprice-import/store.db on Linux]' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand list" -l tenant -d 'The tenant whose tasks and records these are' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand list" -l actor -d 'Who is acting, recorded as created_by/updated_by [default: the OS user]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand list" -l progress -d 'When to draw a progress bar on stderr' -r -f -a "auto\t'Only when stderr is a terminal (and not with --quiet, --json, TERM=dumb or CI)'
always\t'Also into a pipe or log: a plain progress line every 2 s'
never\t'No progress at all'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand list" -l lock-timeout -d 'How long a write waits while another process holds the store\'s write lock (it says so after a moment), before giving up (e.g. 30s, 2m)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand list" -l all -d 'Include archived tasks'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand list" -l wide -d 'Every column at its full width, however wide the terminal (by default, on a terminal, the table fits its width: less useful columns are dropped, long file names shortened)'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand list" -l json -d 'Print {"items":[...],"pagination":{...}} as FlexPrice\'s API does'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand list" -s q -l quiet -d 'Print nothing but data (task ids, JSON, tables) and errors'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand inspect" -l errors -d 'How many rejected rows to show' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand inspect" -l db -d 'The task store: a SQLite file, or a PostgreSQL database as postgres://user:password@host:5432/dbname (every command works on both) [default: $XDG_DATA_HOME/flexprice-import/store.db, ~/.local/share/flexprice-import/store.db on Linux]' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand inspect" -l tenant -d 'The tenant whose tasks and records these are' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand inspect" -l actor -d 'Who is acting, recorded as created_by/updated_by [default: the OS user]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand inspect" -l progress -d 'When to draw a progress bar on stderr' -r -f -a "auto\t'Only when stderr is a terminal (and not with --quiet, --json, TERM=dumb or CI)'
always\t'Also into a pipe or log: a plain progress line every 2 s'
never\t'No progress at all'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand inspect" -l lock-timeout -d 'How long a write waits while another process holds the store\'s write lock (it says so after a moment), before giving up (e.g. 30s, 2m)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand inspect" -l json -d 'Print the task (with its first rejected rows) as JSON'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand inspect" -s q -l quiet -d 'Print nothing but data (task ids, JSON, tables) and errors'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand inspect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand errors" -s o -l output -d 'Where to write them (under a temporary name, renamed when complete); - for standard output' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand errors" -l db -d 'The task store: a SQLite file, or a PostgreSQL database as postgres://user:password@host:5432/dbname (every command works on both) [default: $XDG_DATA_HOME/flexprice-import/store.db, ~/.local/share/flexprice-import/store.db on Linux]' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand errors" -l tenant -d 'The tenant whose tasks and records these are' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand errors" -l actor -d 'Who is acting, recorded as created_by/updated_by [default: the OS user]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand errors" -l progress -d 'When to draw a progress bar on stderr' -r -f -a "auto\t'Only when stderr is a terminal (and not with --quiet, --json, TERM=dumb or CI)'
always\t'Also into a pipe or log: a plain progress line every 2 s'
never\t'No progress at all'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand errors" -l lock-timeout -d 'How long a write waits while another process holds the store\'s write lock (it says so after a moment), before giving up (e.g. 30s, 2m)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand errors" -l duplicates -d 'Include the rows skipped as duplicates'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand errors" -s q -l quiet -d 'Print nothing but data (task ids, JSON, tables) and errors'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand errors" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand verify" -s o -l output -d 'Write the missing and different records to PATH in the input\'s format, as a reject file (their bytes as read, with `line` and `reason`)' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand verify" -l api-url -d 'The FlexPrice server\'s base URL [default: the task\'s]' -r -f
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand verify" -l environment-id -d 'The FlexPrice environment (sent as X-Environment-ID) [default: the task\'s]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand verify" -l api-key -d 'The FlexPrice API key (sent as x-api-key; never stored, logged or printed)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand verify" -l concurrency -d 'Requests to the FlexPrice server in flight at once' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand verify" -l max-retries -d 'Times a request is sent again after a transient failure (429, 408, 5xx, timeout, lost connection) before its rows count as failed' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand verify" -l request-timeout -d 'Time limit of one request to the FlexPrice server' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand verify" -l db -d 'The task store: a SQLite file, or a PostgreSQL database as postgres://user:password@host:5432/dbname (every command works on both) [default: $XDG_DATA_HOME/flexprice-import/store.db, ~/.local/share/flexprice-import/store.db on Linux]' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand verify" -l tenant -d 'The tenant whose tasks and records these are' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand verify" -l actor -d 'Who is acting, recorded as created_by/updated_by [default: the OS user]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand verify" -l progress -d 'When to draw a progress bar on stderr' -r -f -a "auto\t'Only when stderr is a terminal (and not with --quiet, --json, TERM=dumb or CI)'
always\t'Also into a pipe or log: a plain progress line every 2 s'
never\t'No progress at all'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand verify" -l lock-timeout -d 'How long a write waits while another process holds the store\'s write lock (it says so after a moment), before giving up (e.g. 30s, 2m)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand verify" -l json -d 'Print {"checked":N,"found":N,"missing":N,"different":N} on stdout'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand verify" -l resend -d 'Send the missing records again with the same ids, then check again'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand verify" -s q -l quiet -d 'Print nothing but data (task ids, JSON, tables) and errors'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand templates" -l format -d 'What to print' -r -f -a "csv\t'The header row only'
json\t'A JSON array holding one example record'
jsonl\t'One example record on one line'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand templates" -l dir -d 'Write <entity>.csv and <entity>.json for every entity into DIR' -r -f -a "(__fish_complete_directories)"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand templates" -l db -d 'The task store: a SQLite file, or a PostgreSQL database as postgres://user:password@host:5432/dbname (every command works on both) [default: $XDG_DATA_HOME/flexprice-import/store.db, ~/.local/share/flexprice-import/store.db on Linux]' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand templates" -l tenant -d 'The tenant whose tasks and records these are' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand templates" -l actor -d 'Who is acting, recorded as created_by/updated_by [default: the OS user]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand templates" -l progress -d 'When to draw a progress bar on stderr' -r -f -a "auto\t'Only when stderr is a terminal (and not with --quiet, --json, TERM=dumb or CI)'
always\t'Also into a pipe or log: a plain progress line every 2 s'
never\t'No progress at all'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand templates" -l lock-timeout -d 'How long a write waits while another process holds the store\'s write lock (it says so after a moment), before giving up (e.g. 30s, 2m)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand templates" -s q -l quiet -d 'Print nothing but data (task ids, JSON, tables) and errors'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand templates" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand worker" -l concurrency -d 'Tasks run at once by this process' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand worker" -l lease -d 'How long a claim lasts unless renewed (renewed every third of it while the task runs); a task whose worker died is taken up again after this' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand worker" -l poll-interval -d 'How often to look for queued tasks when there are none' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand worker" -l api-key -d 'The FlexPrice API key for tasks with the flexprice target' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand worker" -l request-concurrency -d 'Requests to a FlexPrice server in flight at once, per task' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand worker" -l max-retries -d 'Times a request to a FlexPrice server is sent again after a transient failure' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand worker" -l request-timeout -d 'Time limit of one request to a FlexPrice server' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand worker" -l db -d 'The task store: a SQLite file, or a PostgreSQL database as postgres://user:password@host:5432/dbname (every command works on both) [default: $XDG_DATA_HOME/flexprice-import/store.db, ~/.local/share/flexprice-import/store.db on Linux]' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand worker" -l tenant -d 'The tenant whose tasks and records these are' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand worker" -l actor -d 'Who is acting, recorded as created_by/updated_by [default: the OS user]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand worker" -l progress -d 'When to draw a progress bar on stderr' -r -f -a "auto\t'Only when stderr is a terminal (and not with --quiet, --json, TERM=dumb or CI)'
always\t'Also into a pipe or log: a plain progress line every 2 s'
never\t'No progress at all'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand worker" -l lock-timeout -d 'How long a write waits while another process holds the store\'s write lock (it says so after a moment), before giving up (e.g. 30s, 2m)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand worker" -l once -d 'Drain what is claimable, deliver due webhooks, then exit'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand worker" -s q -l quiet -d 'Print nothing but data (task ids, JSON, tables) and errors'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand worker" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand serve" -l listen -d 'Address to listen on (port 0: any free port; the first line on stdout tells which)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand serve" -l workers -d 'Workers inside the server running queued tasks (0: leave them to `worker` processes)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand serve" -l api-keys -d 'API keys and their tenants: KEY=TENANT pairs separated by commas' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand serve" -l api-keys-file -d 'A file of API keys: one `KEY TENANT` per line' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand serve" -l max-download-mb -d 'The largest download a task created over HTTP may make, in MiB' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand serve" -l max-download-time -d 'The longest such a download may take' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand serve" -l lease -d 'Lease of the tasks the inside workers run' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand serve" -l db -d 'The task store: a SQLite file, or a PostgreSQL database as postgres://user:password@host:5432/dbname (every command works on both) [default: $XDG_DATA_HOME/flexprice-import/store.db, ~/.local/share/flexprice-import/store.db on Linux]' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand serve" -l tenant -d 'The tenant whose tasks and records these are' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand serve" -l actor -d 'Who is acting, recorded as created_by/updated_by [default: the OS user]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand serve" -l progress -d 'When to draw a progress bar on stderr' -r -f -a "auto\t'Only when stderr is a terminal (and not with --quiet, --json, TERM=dumb or CI)'
always\t'Also into a pipe or log: a plain progress line every 2 s'
never\t'No progress at all'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand serve" -l lock-timeout -d 'How long a write waits while another process holds the store\'s write lock (it says so after a moment), before giving up (e.g. 30s, 2m)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand serve" -l allow-loopback -d 'Accept file_url and webhook_url on loopback addresses, over plain http too (for tests)'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand serve" -l allow-private-networks -d 'Accept file_url and webhook_url on private, shared, link-local and loopback addresses (never cloud metadata ones)'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand serve" -s q -l quiet -d 'Print nothing but data (task ids, JSON, tables) and errors'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -s o -l output -d 'Where to write: a file (written under a temporary name, renamed when complete; compressed when it ends in .gz or .zst) or - for standard output' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -l format -d 'The format [default: from the output\'s extension; csv for standard output]' -r -f -a "csv\t''
json\t'A JSON array of objects (or objects one after another)'
jsonl\t'One JSON object per line (also .ndjson)'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -l since -d 'Events at or after this time: an RFC 3339 time, a date or an age (7d)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -l until -d 'Events before this time: an RFC 3339 time, a date or an age' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -l customer -d 'Events of this customer (its external_customer_id or customer_id)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -l event-name -d 'Events with this name' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -l from -d 'Where the records come from' -r -f -a "local\t'This tool\'s own store'
flexprice\t'A FlexPrice server, through its list endpoints (published records; prices without an end_date), with keys instead of the server\'s ids'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -l api-url -d 'The FlexPrice server\'s base URL, e.g. https://api.example.com (for --from flexprice)' -r -f
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -l environment-id -d 'The FlexPrice environment to read (sent as X-Environment-ID; a key stored in FlexPrice reads its own environment whatever this says)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -l api-key -d 'The FlexPrice API key (sent as x-api-key; never stored, logged or printed)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -l concurrency -d 'Requests to the FlexPrice server in flight at once' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -l max-retries -d 'Times a request is sent again after a transient failure (429, 408, 5xx, timeout, lost connection) before its rows count as failed' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -l request-timeout -d 'Time limit of one request to the FlexPrice server' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -l db -d 'The task store: a SQLite file, or a PostgreSQL database as postgres://user:password@host:5432/dbname (every command works on both) [default: $XDG_DATA_HOME/flexprice-import/store.db, ~/.local/share/flexprice-import/store.db on Linux]' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -l tenant -d 'The tenant whose tasks and records these are' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -l actor -d 'Who is acting, recorded as created_by/updated_by [default: the OS user]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -l progress -d 'When to draw a progress bar on stderr' -r -f -a "auto\t'Only when stderr is a terminal (and not with --quiet, --json, TERM=dumb or CI)'
always\t'Also into a pipe or log: a plain progress line every 2 s'
never\t'No progress at all'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -l lock-timeout -d 'How long a write waits while another process holds the store\'s write lock (it says so after a moment), before giving up (e.g. 30s, 2m)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -l json -d 'Print the finished task as JSON on stdout (needs -o PATH, as the records take stdout otherwise)'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -s q -l quiet -d 'Print nothing but data (task ids, JSON, tables) and errors'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and not __fish_seen_subcommand_from import export help" -l db -d 'The task store: a SQLite file, or a PostgreSQL database as postgres://user:password@host:5432/dbname (every command works on both) [default: $XDG_DATA_HOME/flexprice-import/store.db, ~/.local/share/flexprice-import/store.db on Linux]' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and not __fish_seen_subcommand_from import export help" -l tenant -d 'The tenant whose tasks and records these are' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and not __fish_seen_subcommand_from import export help" -l actor -d 'Who is acting, recorded as created_by/updated_by [default: the OS user]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and not __fish_seen_subcommand_from import export help" -l progress -d 'When to draw a progress bar on stderr' -r -f -a "auto\t'Only when stderr is a terminal (and not with --quiet, --json, TERM=dumb or CI)'
always\t'Also into a pipe or log: a plain progress line every 2 s'
never\t'No progress at all'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and not __fish_seen_subcommand_from import export help" -l lock-timeout -d 'How long a write waits while another process holds the store\'s write lock (it says so after a moment), before giving up (e.g. 30s, 2m)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and not __fish_seen_subcommand_from import export help" -s q -l quiet -d 'Print nothing but data (task ids, JSON, tables) and errors'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and not __fish_seen_subcommand_from import export help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and not __fish_seen_subcommand_from import export help" -f -a "import" -d 'Import a folder\'s files (features, plans, addons, prices, entitlements, customers, subscriptions; each .csv, .json or .jsonl) in dependency order, one task per file'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and not __fish_seen_subcommand_from import export help" -f -a "export" -d 'Export every entity of a catalog into a folder, one file per entity, named and written as `catalog import` reads them'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and not __fish_seen_subcommand_from import export help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from import" -l delimiter -d 'The character between fields of the folder\'s CSV files: , ; tab (or \\t) or | [default: ,]; its JSON and JSON Lines files are read as they are' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from import" -l batch-size -d 'Local target: records per store transaction; flexprice target: records per bulk request (as `run --batch-size`)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from import" -l target -d 'Where records go [default: local]' -r -f -a "local\t'This tool\'s own store (no server needed)'
flexprice\t'A FlexPrice server, through its HTTP API'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from import" -l api-url -d 'The FlexPrice server\'s base URL, e.g. https://api.example.com (for --target flexprice)' -r -f
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from import" -l environment-id -d 'The FlexPrice environment to write to (sent as X-Environment-ID)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from import" -l webhook-url -d 'Send the task\'s webhooks (task.started, task.completed, task.failed) to URL, signed with FLEXPRICE_WEBHOOK_SECRET (Standard Webhooks)' -r -f
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from import" -l webhook-progress -d 'Also send task.progress, at most this often (e.g. 30s)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from import" -l api-key -d 'The FlexPrice API key (sent as x-api-key; never stored, logged or printed)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from import" -l concurrency -d 'Requests to the FlexPrice server in flight at once' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from import" -l max-retries -d 'Times a request is sent again after a transient failure (429, 408, 5xx, timeout, lost connection) before its rows count as failed' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from import" -l request-timeout -d 'Time limit of one request to the FlexPrice server' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from import" -l db -d 'The task store: a SQLite file, or a PostgreSQL database as postgres://user:password@host:5432/dbname (every command works on both) [default: $XDG_DATA_HOME/flexprice-import/store.db, ~/.local/share/flexprice-import/store.db on Linux]' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from import" -l tenant -d 'The tenant whose tasks and records these are' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from import" -l actor -d 'Who is acting, recorded as created_by/updated_by [default: the OS user]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from import" -l progress -d 'When to draw a progress bar on stderr' -r -f -a "auto\t'Only when stderr is a terminal (and not with --quiet, --json, TERM=dumb or CI)'
always\t'Also into a pipe or log: a plain progress line every 2 s'
never\t'No progress at all'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from import" -l lock-timeout -d 'How long a write waits while another process holds the store\'s write lock (it says so after a moment), before giving up (e.g. 30s, 2m)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from import" -l keep-going -d 'Run the later files even after a file had rejected rows or failed (they may name records the earlier file did not create)'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from import" -l json -d 'Print the tasks run as a JSON array on stdout instead of the table'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from import" -s q -l quiet -d 'Print nothing but data (task ids, JSON, tables) and errors'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from import" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from export" -l format -d 'The files\' format' -r -f -a "csv\t''
json\t'A JSON array of objects (or objects one after another)'
jsonl\t'One JSON object per line (also .ndjson)'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from export" -l from -d 'Where the records come from' -r -f -a "local\t'This tool\'s own store'
flexprice\t'A FlexPrice server, through its list endpoints (published records; prices without an end_date), with keys instead of the server\'s ids'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from export" -l api-url -d 'The FlexPrice server\'s base URL, e.g. https://api.example.com (for --from flexprice)' -r -f
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from export" -l environment-id -d 'The FlexPrice environment to read (sent as X-Environment-ID; a key stored in FlexPrice reads its own environment whatever this says)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from export" -l api-key -d 'The FlexPrice API key (sent as x-api-key; never stored, logged or printed)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from export" -l concurrency -d 'Requests to the FlexPrice server in flight at once' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from export" -l max-retries -d 'Times a request is sent again after a transient failure (429, 408, 5xx, timeout, lost connection) before its rows count as failed' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from export" -l request-timeout -d 'Time limit of one request to the FlexPrice server' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from export" -l db -d 'The task store: a SQLite file, or a PostgreSQL database as postgres://user:password@host:5432/dbname (every command works on both) [default: $XDG_DATA_HOME/flexprice-import/store.db, ~/.local/share/flexprice-import/store.db on Linux]' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from export" -l tenant -d 'The tenant whose tasks and records these are' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from export" -l actor -d 'Who is acting, recorded as created_by/updated_by [default: the OS user]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from export" -l progress -d 'When to draw a progress bar on stderr' -r -f -a "auto\t'Only when stderr is a terminal (and not with --quiet, --json, TERM=dumb or CI)'
always\t'Also into a pipe or log: a plain progress line every 2 s'
never\t'No progress at all'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from export" -l lock-timeout -d 'How long a write waits while another process holds the store\'s write lock (it says so after a moment), before giving up (e.g. 30s, 2m)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from export" -s q -l quiet -d 'Print nothing but data (task ids, JSON, tables) and errors'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from export" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from help" -f -a "import" -d 'Import a folder\'s files (features, plans, addons, prices, entitlements, customers, subscriptions; each .csv, .json or .jsonl) in dependency order, one task per file'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from help" -f -a "export" -d 'Export every entity of a catalog into a folder, one file per entity, named and written as `catalog import` reads them'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand catalog; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand archive" -l db -d 'The task store: a SQLite file, or a PostgreSQL database as postgres://user:password@host:5432/dbname (every command works on both) [default: $XDG_DATA_HOME/flexprice-import/store.db, ~/.local/share/flexprice-import/store.db on Linux]' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand archive" -l tenant -d 'The tenant whose tasks and records these are' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand archive" -l actor -d 'Who is acting, recorded as created_by/updated_by [default: the OS user]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand archive" -l progress -d 'When to draw a progress bar on stderr' -r -f -a "auto\t'Only when stderr is a terminal (and not with --quiet, --json, TERM=dumb or CI)'
always\t'Also into a pipe or log: a plain progress line every 2 s'
never\t'No progress at all'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand archive" -l lock-timeout -d 'How long a write waits while another process holds the store\'s write lock (it says so after a moment), before giving up (e.g. 30s, 2m)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand archive" -l undo -d 'Publish the tasks again instead'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand archive" -s q -l quiet -d 'Print nothing but data (task ids, JSON, tables) and errors'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand archive" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand prune" -l older-than -d 'Tasks last updated before this: an age (30d, 12h), a date or an RFC 3339 time' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand prune" -l status -d 'Only tasks with this status (completed or failed)' -r -f -a "pending\t''
processing\t''
completed\t''
failed\t''"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand prune" -l db -d 'The task store: a SQLite file, or a PostgreSQL database as postgres://user:password@host:5432/dbname (every command works on both) [default: $XDG_DATA_HOME/flexprice-import/store.db, ~/.local/share/flexprice-import/store.db on Linux]' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand prune" -l tenant -d 'The tenant whose tasks and records these are' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand prune" -l actor -d 'Who is acting, recorded as created_by/updated_by [default: the OS user]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand prune" -l progress -d 'When to draw a progress bar on stderr' -r -f -a "auto\t'Only when stderr is a terminal (and not with --quiet, --json, TERM=dumb or CI)'
always\t'Also into a pipe or log: a plain progress line every 2 s'
never\t'No progress at all'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand prune" -l lock-timeout -d 'How long a write waits while another process holds the store\'s write lock (it says so after a moment), before giving up (e.g. 30s, 2m)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand prune" -l dry-run -d 'List the tasks that would be deleted, and delete nothing'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand prune" -s q -l quiet -d 'Print nothing but data (task ids, JSON, tables) and errors'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand prune" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand completions" -l db -d 'The task store: a SQLite file, or a PostgreSQL database as postgres://user:password@host:5432/dbname (every command works on both) [default: $XDG_DATA_HOME/flexprice-import/store.db, ~/.local/share/flexprice-import/store.db on Linux]' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand completions" -l tenant -d 'The tenant whose tasks and records these are' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand completions" -l actor -d 'Who is acting, recorded as created_by/updated_by [default: the OS user]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand completions" -l progress -d 'When to draw a progress bar on stderr' -r -f -a "auto\t'Only when stderr is a terminal (and not with --quiet, --json, TERM=dumb or CI)'
always\t'Also into a pipe or log: a plain progress line every 2 s'
never\t'No progress at all'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand completions" -l lock-timeout -d 'How long a write waits while another process holds the store\'s write lock (it says so after a moment), before giving up (e.g. 30s, 2m)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand completions" -s q -l quiet -d 'Print nothing but data (task ids, JSON, tables) and errors'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand man" -l dir -d 'Write every page (flexprice-import.1 and one per command) into DIR instead' -r -f -a "(__fish_complete_directories)"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand man" -l db -d 'The task store: a SQLite file, or a PostgreSQL database as postgres://user:password@host:5432/dbname (every command works on both) [default: $XDG_DATA_HOME/flexprice-import/store.db, ~/.local/share/flexprice-import/store.db on Linux]' -r -F
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand man" -l tenant -d 'The tenant whose tasks and records these are' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand man" -l actor -d 'Who is acting, recorded as created_by/updated_by [default: the OS user]' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand man" -l progress -d 'When to draw a progress bar on stderr' -r -f -a "auto\t'Only when stderr is a terminal (and not with --quiet, --json, TERM=dumb or CI)'
always\t'Also into a pipe or log: a plain progress line every 2 s'
never\t'No progress at all'"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand man" -l lock-timeout -d 'How long a write waits while another process holds the store\'s write lock (it says so after a moment), before giving up (e.g. 30s, 2m)' -r
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand man" -s q -l quiet -d 'Print nothing but data (task ids, JSON, tables) and errors'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand man" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand help; and not __fish_seen_subcommand_from create run resume list inspect errors verify templates worker serve export catalog archive prune completions man" -f -a "create" -d 'Record an import task as PENDING and print its id'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand help; and not __fish_seen_subcommand_from create run resume list inspect errors verify templates worker serve export catalog archive prune completions man" -f -a "run" -d 'Run a PENDING or FAILED task, or create one for a file and run it at once'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand help; and not __fish_seen_subcommand_from create run resume list inspect errors verify templates worker serve export catalog archive prune completions man" -f -a "resume" -d 'Continue every task left interrupted: PROCESSING by a process that died, or stopped by Ctrl-C/SIGTERM'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand help; and not __fish_seen_subcommand_from create run resume list inspect errors verify templates worker serve export catalog archive prune completions man" -f -a "list" -d 'List tasks, newest first'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand help; and not __fish_seen_subcommand_from create run resume list inspect errors verify templates worker serve export catalog archive prune completions man" -f -a "inspect" -d 'Show one task in detail: progress, counters, timings and its first rejected rows'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand help; and not __fish_seen_subcommand_from create run resume list inspect errors verify templates worker serve export catalog archive prune completions man" -f -a "errors" -d 'Write a task\'s rejected rows as a file in the input\'s format, with `line` and `reason` columns added, ready to fix and import again'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand help; and not __fish_seen_subcommand_from create run resume list inspect errors verify templates worker serve export catalog archive prune completions man" -f -a "verify" -d 'Read back from the FlexPrice server every record a task delivered and report those found, missing and different (FlexPrice answers 202 even when it loses events)'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand help; and not __fish_seen_subcommand_from create run resume list inspect errors verify templates worker serve export catalog archive prune completions man" -f -a "templates" -d 'Print a header-only CSV template, or an example JSON record, for an entity'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand help; and not __fish_seen_subcommand_from create run resume list inspect errors verify templates worker serve export catalog archive prune completions man" -f -a "worker" -d 'Run queued tasks: claim PENDING ones (and those whose worker died) with a lease, and deliver pending webhooks; `--once` drains the queue and exits (cron)'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand help; and not __fish_seen_subcommand_from create run resume list inspect errors verify templates worker serve export catalog archive prune completions man" -f -a "serve" -d 'Serve the HTTP task API (create, get, list tasks, their rejected rows) with workers inside'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand help; and not __fish_seen_subcommand_from create run resume list inspect errors verify templates worker serve export catalog archive prune completions man" -f -a "export" -d 'Export an entity from the local store, or from a FlexPrice server, as an EXPORT task, in the format import reads'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand help; and not __fish_seen_subcommand_from create run resume list inspect errors verify templates worker serve export catalog archive prune completions man" -f -a "catalog" -d 'Import or export a whole catalog (features, prices, customers, …) as a folder with one file per entity, in dependency order'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand help; and not __fish_seen_subcommand_from create run resume list inspect errors verify templates worker serve export catalog archive prune completions man" -f -a "archive" -d 'Hide tasks from `list` (`list --all` shows them); `--undo` shows them again'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand help; and not __fish_seen_subcommand_from create run resume list inspect errors verify templates worker serve export catalog archive prune completions man" -f -a "prune" -d 'Delete finished tasks older than an age, with their rejected rows and checkpoints (never the records they imported)'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand help; and not __fish_seen_subcommand_from create run resume list inspect errors verify templates worker serve export catalog archive prune completions man" -f -a "completions" -d 'Print a shell completion script (the scripts are also in completions/)'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand help; and not __fish_seen_subcommand_from create run resume list inspect errors verify templates worker serve export catalog archive prune completions man" -f -a "man" -d 'Print the manual page, as roff (`man -l -` reads it)'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand help; and not __fish_seen_subcommand_from create run resume list inspect errors verify templates worker serve export catalog archive prune completions man" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand help; and __fish_seen_subcommand_from catalog" -f -a "import" -d 'Import a folder\'s files (features, plans, addons, prices, entitlements, customers, subscriptions; each .csv, .json or .jsonl) in dependency order, one task per file'
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand help; and __fish_seen_subcommand_from catalog" -f -a "export" -d 'Export every entity of a catalog into a folder, one file per entity, named and written as `catalog import` reads them'

# Values of positional arguments (added by flexprice-import)
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand templates" -f -a "events"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand templates" -f -a "prices"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand templates" -f -a "customers"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand templates" -f -a "features"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand templates" -f -a "plans"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand templates" -f -a "addons"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand templates" -f -a "entitlements"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand templates" -f -a "subscriptions"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -f -a "events"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -f -a "prices"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -f -a "customers"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -f -a "features"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -f -a "plans"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -f -a "addons"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -f -a "entitlements"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand export" -f -a "subscriptions"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand completions" -f -a "bash"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand completions" -f -a "elvish"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand completions" -f -a "fish"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand completions" -f -a "powershell"
complete -c flexprice-import -n "__fish_flexprice_import_using_subcommand completions" -f -a "zsh"
