# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_mailsync_global_optspecs
    string join \n config= q/quiet v/verbose log-file= color= h/help V/version
end

function __fish_mailsync_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_mailsync_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_mailsync_using_subcommand
    set -l cmd (__fish_mailsync_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c mailsync -n "__fish_mailsync_needs_command" -l config -d 'Read the configuration from PATH [default: $XDG_CONFIG_HOME/mailsync/config.toml]' -r -F
complete -c mailsync -n "__fish_mailsync_needs_command" -l log-file -d 'Append log messages (with times) to FILE instead of printing them on stderr' -r -F
complete -c mailsync -n "__fish_mailsync_needs_command" -l color -d 'When to color messages on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c mailsync -n "__fish_mailsync_needs_command" -s q -l quiet -d 'Print errors only'
complete -c mailsync -n "__fish_mailsync_needs_command" -s v -l verbose -d 'Print each step; repeat for more detail'
complete -c mailsync -n "__fish_mailsync_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailsync -n "__fish_mailsync_needs_command" -s V -l version -d 'Print version'
complete -c mailsync -n "__fish_mailsync_needs_command" -f -a "sync" -d 'Sync accounts (all of them when none is named)'
complete -c mailsync -n "__fish_mailsync_needs_command" -f -a "watch" -d 'Keep syncing: follow changes on the server and in the Maildir as they happen'
complete -c mailsync -n "__fish_mailsync_needs_command" -f -a "count" -d 'Count messages per folder, on the server and in the Maildir'
complete -c mailsync -n "__fish_mailsync_needs_command" -f -a "migrate" -d 'Copy every folder of one IMAP account to another, resumably and without duplicates'
complete -c mailsync -n "__fish_mailsync_needs_command" -f -a "auth" -d 'Sign in with OAuth2 and check the stored tokens'
complete -c mailsync -n "__fish_mailsync_needs_command" -f -a "check" -d 'Log in and show the server\'s capabilities, namespace and folders, changing nothing'
complete -c mailsync -n "__fish_mailsync_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l folder -d 'Sync only folders matching PATTERN (IMAP wildcards: * matches anything, % anything but the hierarchy separator); repeatable; replaces the `folders` setting' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l exclude -d 'Leave out folders matching PATTERN (same wildcards); repeatable; adds to the `exclude` setting' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l direction -d 'Which way changes travel: both, pull (server to Maildir) or push' -r -f -a "both\t''
pull\t''
push\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l keep-days -d 'Download-delete: leave messages on the server N days after their first download, or `forever` (download only)' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l move-to -d 'Download-delete: move messages to FOLDER on the server instead of deleting them' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -s j -l jobs -d 'Sync up to N folders at once, each over its own connection; one out of folders helps copy another\'s messages [default: 4]' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l max-messages -d 'Download at most N messages per folder in this run' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l report -d 'Print a machine-readable report of the run on stdout (or into --report-file)' -r -f -a "json\t''
prometheus\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l report-file -d 'Write the report to FILE instead of stdout, replacing it atomically' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l host -d 'Server host name or address; makes this a one-off run named USER@HOST' -r -f -a "(__fish_print_hostnames)"
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l protocol -d 'Server protocol; pop3 always downloads and deletes [default: imap]' -r -f -a "imap\t''
pop3\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l port -d 'Server port [default: 993 with implicit TLS, else 143; POP3: 995, else 110]' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l tls -d 'Connection security [default: implicit]' -r -f -a "implicit\t''
starttls\t''
none\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l ca-file -d 'Extra trusted CA certificate (PEM)' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l fingerprint -d 'Accept only the server certificate with this SHA-256 (hex)' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l user -d 'Login name' -r -f -a "(__fish_complete_users)"
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l password-command -d 'Run COMMAND with sh -c; the first line it prints is the password' -r -f -a "(__fish_complete_command)"
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l password-env -d 'Read the password from the environment variable VAR' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l password-file -d 'Read the password from the first line of FILE' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l auth -d 'Login method [default: auto]; with xoauth2 or oauthbearer the password source supplies an OAuth2 access token' -r -f -a "auto\t''
plain\t''
login\t''
xoauth2\t''
oauthbearer\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l maildir -d 'Local Maildir root (created on the first run)' -r -f -a "(__fish_complete_directories)"
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l layout -d 'How folders map to directories [default: maildir++]' -r -f -a "maildir++\t''
nested\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l state -d 'State database [default: $XDG_DATA_HOME/mailsync/USER@HOST-HASH.db, HASH from the server\'s protocol, host, port and user and the Maildir]' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l mode -d 'Two-way sync, or download and then delete on the server [default: two-way]' -r -f -a "two-way\t''
download-delete\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l batch-bytes -d 'Message bytes per batch, e.g. 32MiB [default: 32MiB]' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l timeout-seconds -d 'Network timeout [default: 60]' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l wait -d 'When another run holds an account\'s lock, wait up to SECONDS for it to finish instead of exiting with status 5' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l config -d 'Read the configuration from PATH [default: $XDG_CONFIG_HOME/mailsync/config.toml]' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l log-file -d 'Append log messages (with times) to FILE instead of printing them on stderr' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l color -d 'When to color messages on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -s n -l dry-run -d 'Print the plan, change nothing (neither mail nor state)'
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l allow-mass-delete -d 'Lift the mass-deletion brake for this run'
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l rebind-state -d 'The state database was made for another server or Maildir, and the move is intended: record the configured ones and pair messages again by Message-ID and size, deleting nothing in this run'
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l allow-plaintext -d 'Accept tls = "none" (the password and mail travel unencrypted)'
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l no-deletions -d 'Propagate no deletions in either direction this run'
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l download-delete -d 'Download what is not yet local, then delete it on the server once the local copy is durable (mode = "download-delete" for this run)'
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l strict -d 'Report a skipped message, and exit with 1, on every run; by default one that an earlier run reported for the same reason is only counted in the reports'
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -l skip-if-locked -d 'When another run holds an account\'s lock, leave that account out quietly (exit status 0; one line with -v): for cron jobs that may overlap'
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -s q -l quiet -d 'Print errors only'
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -s v -l verbose -d 'Print each step; repeat for more detail'
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l folder -d 'Sync only folders matching PATTERN (IMAP wildcards: * matches anything, % anything but the hierarchy separator); repeatable; replaces the `folders` setting' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l exclude -d 'Leave out folders matching PATTERN (same wildcards); repeatable; adds to the `exclude` setting' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l direction -d 'Which way changes travel: both, pull (server to Maildir) or push' -r -f -a "both\t''
pull\t''
push\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l keep-days -d 'Download-delete: leave messages on the server N days after their first download, or `forever` (download only)' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l move-to -d 'Download-delete: move messages to FOLDER on the server instead of deleting them' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -s j -l jobs -d 'Sync up to N folders at once, each over its own connection; one out of folders helps copy another\'s messages [default: 4]' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l max-messages -d 'Download at most N messages per folder in this run' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l report -d 'Print a machine-readable report of the run on stdout (or into --report-file)' -r -f -a "json\t''
prometheus\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l report-file -d 'Write the report to FILE instead of stdout, replacing it atomically' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l host -d 'Server host name or address; makes this a one-off run named USER@HOST' -r -f -a "(__fish_print_hostnames)"
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l protocol -d 'Server protocol; pop3 always downloads and deletes [default: imap]' -r -f -a "imap\t''
pop3\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l port -d 'Server port [default: 993 with implicit TLS, else 143; POP3: 995, else 110]' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l tls -d 'Connection security [default: implicit]' -r -f -a "implicit\t''
starttls\t''
none\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l ca-file -d 'Extra trusted CA certificate (PEM)' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l fingerprint -d 'Accept only the server certificate with this SHA-256 (hex)' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l user -d 'Login name' -r -f -a "(__fish_complete_users)"
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l password-command -d 'Run COMMAND with sh -c; the first line it prints is the password' -r -f -a "(__fish_complete_command)"
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l password-env -d 'Read the password from the environment variable VAR' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l password-file -d 'Read the password from the first line of FILE' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l auth -d 'Login method [default: auto]; with xoauth2 or oauthbearer the password source supplies an OAuth2 access token' -r -f -a "auto\t''
plain\t''
login\t''
xoauth2\t''
oauthbearer\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l maildir -d 'Local Maildir root (created on the first run)' -r -f -a "(__fish_complete_directories)"
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l layout -d 'How folders map to directories [default: maildir++]' -r -f -a "maildir++\t''
nested\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l state -d 'State database [default: $XDG_DATA_HOME/mailsync/USER@HOST-HASH.db, HASH from the server\'s protocol, host, port and user and the Maildir]' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l mode -d 'Two-way sync, or download and then delete on the server [default: two-way]' -r -f -a "two-way\t''
download-delete\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l batch-bytes -d 'Message bytes per batch, e.g. 32MiB [default: 32MiB]' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l timeout-seconds -d 'Network timeout [default: 60]' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l config -d 'Read the configuration from PATH [default: $XDG_CONFIG_HOME/mailsync/config.toml]' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l log-file -d 'Append log messages (with times) to FILE instead of printing them on stderr' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l color -d 'When to color messages on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -s n -l dry-run -d 'Print the plan, change nothing (neither mail nor state)'
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l allow-mass-delete -d 'Lift the mass-deletion brake for this run'
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l rebind-state -d 'The state database was made for another server or Maildir, and the move is intended: record the configured ones and pair messages again by Message-ID and size, deleting nothing in this run'
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l allow-plaintext -d 'Accept tls = "none" (the password and mail travel unencrypted)'
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l no-deletions -d 'Propagate no deletions in either direction this run'
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l download-delete -d 'Download what is not yet local, then delete it on the server once the local copy is durable (mode = "download-delete" for this run)'
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -l strict -d 'Report a skipped message, and exit with 1, on every run; by default one that an earlier run reported for the same reason is only counted in the reports'
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -s q -l quiet -d 'Print errors only'
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -s v -l verbose -d 'Print each step; repeat for more detail'
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l folder -d 'Count only folders matching PATTERN (IMAP wildcards, as for sync); repeatable; replaces the `folders` setting' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l format -d 'Output format' -r -f -a "table\t'Aligned columns for people'
tsv\t'Tab-separated values with a header line'
json\t'One JSON document (see the description for its shape)'
prometheus\t'Prometheus text exposition (gauges)'"
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -s o -l output -d 'Write the output to FILE, replacing it atomically (temporary file, then rename)' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l warning -d 'Monitoring-plugin check: WARNING (exit 1) when the --check figure is above N' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l critical -d 'Monitoring-plugin check: CRITICAL (exit 2) when the --check figure is above N' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l check -d 'The figure --warning and --critical look at, summed over the selected accounts and folders' -r -f -a "pending\t'Messages waiting to be copied, both ways'
unseen\t'Unseen messages on the server'"
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l host -d 'Server host name or address; makes this a one-off run named USER@HOST' -r -f -a "(__fish_print_hostnames)"
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l protocol -d 'Server protocol; pop3 always downloads and deletes [default: imap]' -r -f -a "imap\t''
pop3\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l port -d 'Server port [default: 993 with implicit TLS, else 143; POP3: 995, else 110]' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l tls -d 'Connection security [default: implicit]' -r -f -a "implicit\t''
starttls\t''
none\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l ca-file -d 'Extra trusted CA certificate (PEM)' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l fingerprint -d 'Accept only the server certificate with this SHA-256 (hex)' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l user -d 'Login name' -r -f -a "(__fish_complete_users)"
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l password-command -d 'Run COMMAND with sh -c; the first line it prints is the password' -r -f -a "(__fish_complete_command)"
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l password-env -d 'Read the password from the environment variable VAR' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l password-file -d 'Read the password from the first line of FILE' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l auth -d 'Login method [default: auto]; with xoauth2 or oauthbearer the password source supplies an OAuth2 access token' -r -f -a "auto\t''
plain\t''
login\t''
xoauth2\t''
oauthbearer\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l maildir -d 'Local Maildir root (created on the first run)' -r -f -a "(__fish_complete_directories)"
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l layout -d 'How folders map to directories [default: maildir++]' -r -f -a "maildir++\t''
nested\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l state -d 'State database [default: $XDG_DATA_HOME/mailsync/USER@HOST-HASH.db, HASH from the server\'s protocol, host, port and user and the Maildir]' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l mode -d 'Two-way sync, or download and then delete on the server [default: two-way]' -r -f -a "two-way\t''
download-delete\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l batch-bytes -d 'Message bytes per batch, e.g. 32MiB [default: 32MiB]' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l timeout-seconds -d 'Network timeout [default: 60]' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l config -d 'Read the configuration from PATH [default: $XDG_CONFIG_HOME/mailsync/config.toml]' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l log-file -d 'Append log messages (with times) to FILE instead of printing them on stderr' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l color -d 'When to color messages on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l offline -d 'Answer from the state database and the Maildir alone: no network, no password'
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l total -d 'Print only the number of messages on the server, summed over every selected folder'
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l unseen -d 'With --total: count unseen messages only'
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -l allow-plaintext -d 'Accept tls = "none" (the password travels unencrypted)'
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -s q -l quiet -d 'Print errors only'
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -s v -l verbose -d 'Print each step; repeat for more detail'
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l from -d 'Source account, as named in the config file' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l to -d 'Destination account, as named in the config file' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l batch -d 'Migrate every account pair of a CSV file, several at once (see the description)' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -s j -l jobs -d 'Connection pairs, folders spread over them, and a pair out of folders helps copy another\'s (with --batch: in total, over the pairs run at once); fewer when a server refuses more connections' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l folder -d 'Migrate only source folders matching PATTERN (IMAP wildcards: * matches anything, % anything but the hierarchy separator); repeatable' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l exclude -d 'Leave out source folders matching PATTERN; repeatable' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l map -d 'Put source folder OLD, and its subfolders, at NEW on the destination (levels separated by /); repeatable, the longest matching OLD wins' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l rename -d 'Rename folders not placed by --map or by role: the first match of the regular expression REGEX in the name (levels separated by /) becomes REPLACEMENT ($1 for a group); repeatable, applied in order' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l batch-bytes -d 'Message bytes held per batch, e.g. 32MiB [default: 32MiB]' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l state -d 'State database [default: $XDG_DATA_HOME/mailsync/migrate-FROM-TO-HASH.db, HASH from both servers\' host, port and user]' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l report -d 'Report format, on stdout or into --report-file' -r -f -a "text\t'A table for people'
json\t'One JSON document'"
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l report-file -d 'Write the report in --report\'s format to FILE, replacing it atomically; the table still goes to stdout' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l from-host -d 'IMAP server host name or address' -r -f -a "(__fish_print_hostnames)"
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l from-port -d 'Server port [default: 993 with implicit TLS, else 143]' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l from-tls -d 'Connection security [default: implicit]' -r -f -a "implicit\t''
starttls\t''
none\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l from-ca-file -d 'Extra trusted CA certificate (PEM)' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l from-fingerprint -d 'Accept only the server certificate with this SHA-256 (hex)' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l from-user -d 'Login name' -r -f -a "(__fish_complete_users)"
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l from-password-env -d 'Read the password from the environment variable VAR' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l from-password-command -d 'Run COMMAND with sh -c; the first line it prints is the password' -r -f -a "(__fish_complete_command)"
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l from-password-file -d 'Read the password from the first line of FILE' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l from-auth -d 'Login method [default: auto]; with xoauth2 or oauthbearer the password source supplies an OAuth2 access token' -r -f -a "auto\t''
plain\t''
login\t''
xoauth2\t''
oauthbearer\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l from-timeout-seconds -d 'Network timeout [default: 60]' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l to-host -d 'IMAP server host name or address' -r -f -a "(__fish_print_hostnames)"
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l to-port -d 'Server port [default: 993 with implicit TLS, else 143]' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l to-tls -d 'Connection security [default: implicit]' -r -f -a "implicit\t''
starttls\t''
none\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l to-ca-file -d 'Extra trusted CA certificate (PEM)' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l to-fingerprint -d 'Accept only the server certificate with this SHA-256 (hex)' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l to-user -d 'Login name' -r -f -a "(__fish_complete_users)"
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l to-password-env -d 'Read the password from the environment variable VAR' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l to-password-command -d 'Run COMMAND with sh -c; the first line it prints is the password' -r -f -a "(__fish_complete_command)"
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l to-password-file -d 'Read the password from the first line of FILE' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l to-auth -d 'Login method [default: auto]; with xoauth2 or oauthbearer the password source supplies an OAuth2 access token' -r -f -a "auto\t''
plain\t''
login\t''
xoauth2\t''
oauthbearer\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l to-timeout-seconds -d 'Network timeout [default: 60]' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l wait -d 'When another run holds an account\'s lock, wait up to SECONDS for it to finish instead of exiting with status 5' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l config -d 'Read the configuration from PATH [default: $XDG_CONFIG_HOME/mailsync/config.toml]' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l log-file -d 'Append log messages (with times) to FILE instead of printing them on stderr' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l color -d 'When to color messages on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -s n -l dry-run -d 'List folders, destinations, messages and bytes to copy and duplicates; change nothing'
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l sync-flags -d 'Bring flags and keywords of messages already on the destination in line with the source [default]'
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l no-sync-flags -d 'Leave flags of messages already on the destination as they are'
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l delete-source-after -d 'Delete each source message once its copy is confirmed on the destination (UID EXPUNGE of exactly those messages)'
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l rebind-state -d 'The state database was made for other servers, and the move is intended: record the given ones, forget the old records and pair messages again by Message-ID and size'
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l allow-plaintext -d 'Accept tls none (the password and mail travel unencrypted)'
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l skip-if-locked -d 'When another run holds an account\'s lock, leave that account out quietly (exit status 0; one line with -v): for cron jobs that may overlap'
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -s q -l quiet -d 'Print errors only'
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -s v -l verbose -d 'Print each step; repeat for more detail'
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and not __fish_seen_subcommand_from login status help" -l config -d 'Read the configuration from PATH [default: $XDG_CONFIG_HOME/mailsync/config.toml]' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and not __fish_seen_subcommand_from login status help" -l log-file -d 'Append log messages (with times) to FILE instead of printing them on stderr' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and not __fish_seen_subcommand_from login status help" -l color -d 'When to color messages on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and not __fish_seen_subcommand_from login status help" -s q -l quiet -d 'Print errors only'
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and not __fish_seen_subcommand_from login status help" -s v -l verbose -d 'Print each step; repeat for more detail'
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and not __fish_seen_subcommand_from login status help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and not __fish_seen_subcommand_from login status help" -f -a "login" -d 'Sign in to the provider and store the refresh token'
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and not __fish_seen_subcommand_from login status help" -f -a "status" -d 'Show the stored tokens of accounts with an oauth2 table, after refreshing them'
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and not __fish_seen_subcommand_from login status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and __fish_seen_subcommand_from login" -l config -d 'Read the configuration from PATH [default: $XDG_CONFIG_HOME/mailsync/config.toml]' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and __fish_seen_subcommand_from login" -l log-file -d 'Append log messages (with times) to FILE instead of printing them on stderr' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and __fish_seen_subcommand_from login" -l color -d 'When to color messages on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and __fish_seen_subcommand_from login" -l device -d 'Use the device flow (an address and a code to enter there)'
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and __fish_seen_subcommand_from login" -l browser -d 'Use a browser on this machine (authorization code with a loopback redirect and PKCE)'
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and __fish_seen_subcommand_from login" -s q -l quiet -d 'Print errors only'
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and __fish_seen_subcommand_from login" -s v -l verbose -d 'Print each step; repeat for more detail'
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and __fish_seen_subcommand_from login" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and __fish_seen_subcommand_from status" -l config -d 'Read the configuration from PATH [default: $XDG_CONFIG_HOME/mailsync/config.toml]' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and __fish_seen_subcommand_from status" -l log-file -d 'Append log messages (with times) to FILE instead of printing them on stderr' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and __fish_seen_subcommand_from status" -l color -d 'When to color messages on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print errors only'
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and __fish_seen_subcommand_from status" -s v -l verbose -d 'Print each step; repeat for more detail'
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and __fish_seen_subcommand_from help" -f -a "login" -d 'Sign in to the provider and store the refresh token'
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show the stored tokens of accounts with an oauth2 table, after refreshing them'
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l report -d 'Output format' -r -f -a "text\t'A table for people'
json\t'One JSON document'"
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l host -d 'Server host name or address; makes this a one-off run named USER@HOST' -r -f -a "(__fish_print_hostnames)"
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l protocol -d 'Server protocol; pop3 always downloads and deletes [default: imap]' -r -f -a "imap\t''
pop3\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l port -d 'Server port [default: 993 with implicit TLS, else 143; POP3: 995, else 110]' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l tls -d 'Connection security [default: implicit]' -r -f -a "implicit\t''
starttls\t''
none\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l ca-file -d 'Extra trusted CA certificate (PEM)' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l fingerprint -d 'Accept only the server certificate with this SHA-256 (hex)' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l user -d 'Login name' -r -f -a "(__fish_complete_users)"
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l password-command -d 'Run COMMAND with sh -c; the first line it prints is the password' -r -f -a "(__fish_complete_command)"
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l password-env -d 'Read the password from the environment variable VAR' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l password-file -d 'Read the password from the first line of FILE' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l auth -d 'Login method [default: auto]; with xoauth2 or oauthbearer the password source supplies an OAuth2 access token' -r -f -a "auto\t''
plain\t''
login\t''
xoauth2\t''
oauthbearer\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l maildir -d 'Local Maildir root (created on the first run)' -r -f -a "(__fish_complete_directories)"
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l layout -d 'How folders map to directories [default: maildir++]' -r -f -a "maildir++\t''
nested\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l state -d 'State database [default: $XDG_DATA_HOME/mailsync/USER@HOST-HASH.db, HASH from the server\'s protocol, host, port and user and the Maildir]' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l mode -d 'Two-way sync, or download and then delete on the server [default: two-way]' -r -f -a "two-way\t''
download-delete\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l batch-bytes -d 'Message bytes per batch, e.g. 32MiB [default: 32MiB]' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l timeout-seconds -d 'Network timeout [default: 60]' -r
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l config -d 'Read the configuration from PATH [default: $XDG_CONFIG_HOME/mailsync/config.toml]' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l log-file -d 'Append log messages (with times) to FILE instead of printing them on stderr' -r -F
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l color -d 'When to color messages on stderr' -r -f -a "auto\t''
always\t''
never\t''"
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -l allow-plaintext -d 'Accept tls = "none" (the password travels unencrypted)'
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -s q -l quiet -d 'Print errors only'
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -s v -l verbose -d 'Print each step; repeat for more detail'
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mailsync -n "__fish_mailsync_using_subcommand help; and not __fish_seen_subcommand_from sync watch count migrate auth check help" -f -a "sync" -d 'Sync accounts (all of them when none is named)'
complete -c mailsync -n "__fish_mailsync_using_subcommand help; and not __fish_seen_subcommand_from sync watch count migrate auth check help" -f -a "watch" -d 'Keep syncing: follow changes on the server and in the Maildir as they happen'
complete -c mailsync -n "__fish_mailsync_using_subcommand help; and not __fish_seen_subcommand_from sync watch count migrate auth check help" -f -a "count" -d 'Count messages per folder, on the server and in the Maildir'
complete -c mailsync -n "__fish_mailsync_using_subcommand help; and not __fish_seen_subcommand_from sync watch count migrate auth check help" -f -a "migrate" -d 'Copy every folder of one IMAP account to another, resumably and without duplicates'
complete -c mailsync -n "__fish_mailsync_using_subcommand help; and not __fish_seen_subcommand_from sync watch count migrate auth check help" -f -a "auth" -d 'Sign in with OAuth2 and check the stored tokens'
complete -c mailsync -n "__fish_mailsync_using_subcommand help; and not __fish_seen_subcommand_from sync watch count migrate auth check help" -f -a "check" -d 'Log in and show the server\'s capabilities, namespace and folders, changing nothing'
complete -c mailsync -n "__fish_mailsync_using_subcommand help; and not __fish_seen_subcommand_from sync watch count migrate auth check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mailsync -n "__fish_mailsync_using_subcommand help; and __fish_seen_subcommand_from auth" -f -a "login" -d 'Sign in to the provider and store the refresh token'
complete -c mailsync -n "__fish_mailsync_using_subcommand help; and __fish_seen_subcommand_from auth" -f -a "status" -d 'Show the stored tokens of accounts with an oauth2 table, after refreshing them'

# Account names, from the config file through the hidden `mailsync accounts`
# (with the command line's --config, if any).
function __fish_mailsync_accounts
    set -l tokens (commandline -opc)
    set -l config
    for i in (seq (count $tokens))
        switch $tokens[$i]
            case --config
                set config --config $tokens[(math $i + 1)]
            case '--config=*'
                set config --config (string replace -- --config= '' $tokens[$i])
        end
    end
    mailsync $config accounts 2>/dev/null
end
complete -c mailsync -n "__fish_mailsync_using_subcommand sync" -f -a "(__fish_mailsync_accounts)"
complete -c mailsync -n "__fish_mailsync_using_subcommand watch" -f -a "(__fish_mailsync_accounts)"
complete -c mailsync -n "__fish_mailsync_using_subcommand count" -f -a "(__fish_mailsync_accounts)"
complete -c mailsync -n "__fish_mailsync_using_subcommand check" -f -a "(__fish_mailsync_accounts)"
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and __fish_seen_subcommand_from login" -f -a "(__fish_mailsync_accounts)"
complete -c mailsync -n "__fish_mailsync_using_subcommand auth; and __fish_seen_subcommand_from status" -f -a "(__fish_mailsync_accounts)"
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l from -x -a "(__fish_mailsync_accounts)"
complete -c mailsync -n "__fish_mailsync_using_subcommand migrate" -l to -x -a "(__fish_mailsync_accounts)"
