# What zsh's own completion offers, for the completion tests (tests/cli/completions.rs).
#
#     zsh -f complete.zsh FPATH_DIR CASES OUT
#
# Starts an interactive zsh in a pseudo-terminal (zsh/zpty), with FPATH_DIR first in $fpath
# and compinit loaded as a user's .zshrc does, then types each line of CASES and a TAB. Every
# match that completion adds is written to OUT under a line `== N` (N counts the cases from 0).
# Nothing is inserted or run: after each TAB the line is cleared for the next case.
zmodload zsh/zpty || { print -u2 "zsh/zpty is missing"; exit 2 }
dir=$1 cases=$2 out=$3
: >| $out
zpty z zsh -f -i
zpty -w z "PS1=''; CAPTURE=${(q)out}"
zpty -w z "fpath=(${(q)dir} \$fpath); autoload -U compinit; compinit -u -D"
zpty -w z "bindkey '^U' kill-whole-line"
# Record each match as compadd adds it (calls that only compute, -O -A -D, pass through).
zpty -w z 'compadd() {
  if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return $?; fi
  local -a __hits; builtin compadd -A __hits "$@"
  local h; for h in $__hits; do print -r -- "$h" >> $CAPTURE; done
}'
# TAB runs the usual completion (_main_complete), then inserts and lists nothing.
zpty -w z '_capture() { _main_complete; compstate[insert]=""; compstate[list]=""; print -r -- "-- done" >> $CAPTURE }'
zpty -w z "zle -C capture complete-word _capture; bindkey '^I' capture"
integer n=0
while IFS= read -r line; do
  print -r -- "== $n" >> $out
  zpty -w -n z $'\C-u'"$line"$'\t'
  integer waited=0
  # Wait for this case's end (up to 20 s: the machine may be busy with a build).
  local -a lines ended
  while true; do
    lines=( ${(f)"$(<$out)"} ); ended=( ${(M)lines:#-- done} )
    (( $#ended > n )) && break
    (( ++waited > 400 )) && { print -u2 "zsh gave no completion for: $line"; zpty -d z; exit 1 }
    sleep 0.05
  done
  (( ++n ))
done < $cases
zpty -d z
