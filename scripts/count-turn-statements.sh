#!/bin/bash
# Counts the SQL statements one chat turn makes (a new project, knowledge off), with
# log_statement=all on confab's embedded PostgreSQL, and lists them. Needs curl, python3, psql.
# Usage: scripts/count-turn-statements.sh target/debug/confab target/debug/examples/fake_llm
set -e
bin=$1; fake=$2
d=$(mktemp -d); chmod o+x $d
$fake --port 18190 >$d/fake.log 2>&1 & fp=$!
OPENAI_BASE_URL=http://127.0.0.1:18190/v1 OPENAI_API_KEY=sk-x CONFAB_AUTH__BCRYPT_COST=4 $bin --data-dir $d/data --port 18191 >$d/confab.log 2>&1 & cp=$!
for i in $(seq 1 300); do curl -sf http://127.0.0.1:18191/health >/dev/null && break; sleep 0.2; done
api=http://127.0.0.1:18191/api
curl -s -XPOST $api/auth/register -H "content-type: application/json" -d '{"email":"q@example.com","password":"count pass 1"}' >/dev/null
tok=$(curl -s -XPOST $api/auth/login -H "content-type: application/json" -d '{"email":"q@example.com","password":"count pass 1"}' | python3 -c 'import sys,json; print(json.load(sys.stdin)["access_token"])')
proj=$(curl -s -XPOST $api/projects -H "authorization: Bearer $tok" -H 'content-type: application/json' -d '{"name":"Q"}' | python3 -c 'import sys,json; print(json.load(sys.stdin)["id"])')
agent=$(curl -s $api/projects/$proj/agents -H "authorization: Bearer $tok" | python3 -c 'import sys,json; print(json.load(sys.stdin)[0]["id"])')
chat() { curl -s -N -XPOST $api/chat/agents/$agent -H "authorization: Bearer $tok" -H 'content-type: application/json' -d "{\"message\":\"$1\"}" >/dev/null; }
chat "warm up"
sock=$(ls -d $d/data/run /tmp/confab-pg-* 2>/dev/null | head -1)
owner=$(stat -c %U $d/data/pg)
psqlc() { if [ "$owner" = root ]; then psql -h $sock -U confab -d postgres -Atc "$1"; else su $owner -s /bin/sh -c "psql -h $sock -U confab -d postgres -Atc \"$1\""; fi; }
psqlc "ALTER SYSTEM SET log_statement = 'all'" >/dev/null; psqlc "SELECT pg_reload_conf()" >/dev/null
# The reload is asynchronous, and the last flush of the warm-up may still be on its way.
sleep 1
before=$(grep -c "statement: \|execute " $d/data/pg.log || true)
chat "count me"
# The answer is saved just after its stream ends.
sleep 2
after=$(grep -c "statement: \|execute " $d/data/pg.log || true)
echo "statements for one turn (send, stream, save): $((after - before))"
grep "statement: \|execute " $d/data/pg.log | tail -n $((after - before)) | sed 's/.*\(statement\|execute [^:]*\): //' | cut -c1-110
kill -INT $cp; wait $cp || true; kill $fp; rm -rf $d
