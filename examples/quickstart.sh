#!/usr/bin/env bash
# The README quickstart, runnable: registers a client and walks the authorization code + PKCE flow
# with curl against a fresh server, then creates an API key and mints a service token with it. Usage: examples/quickstart.sh [path/to/portcullis]
set -euo pipefail

PORTCULLIS=$(realpath "${1:-target/debug/portcullis}")
WORK=$(mktemp -d)
SERVER=
trap '[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$WORK"' EXIT
export PORTCULLIS_DATABASE_URL="sqlite://$WORK/portcullis.db"
cd "$WORK"

# 1. A workspace, a user with permissions in it, and an app.
"$PORTCULLIS" workspace create acme --name "Acme Inc"
echo 'correct horse battery staple' | "$PORTCULLIS" user create --email ada@example.com --name "Ada" --password-stdin
"$PORTCULLIS" member add --workspace acme --email ada@example.com --permissions "contacts:read contacts:write"
"$PORTCULLIS" client create --name "Demo App" --redirect-uri http://127.0.0.1:9000/callback \
    --scope "openid email profile contacts:read" --json > client.json
CLIENT_ID=$(sed -E 's/.*"client_id":"([^"]+)".*/\1/' client.json)
CLIENT_SECRET=$(sed -E 's/.*"client_secret":"([^"]+)".*/\1/' client.json)

# 2. The server (port 0 picks a free port; the log line says which).
"$PORTCULLIS" serve --bind 127.0.0.1:0 2> server.log &
SERVER=$!
until grep -q '"portcullis listening"' server.log; do sleep 0.1; done
ISSUER=$(grep '"portcullis listening"' server.log | sed -E 's/.*"issuer":"([^"]+)".*/\1/')
echo "server at $ISSUER"

# 3. PKCE: a random verifier and its S256 challenge.
VERIFIER=$(openssl rand -base64 48 | tr -d '=+/\n' | cut -c1-64)
CHALLENGE=$(printf '%s' "$VERIFIER" | openssl dgst -sha256 -binary | openssl base64 | tr '+/' '-_' | tr -d '=\n')

# 4. The browser part: authorize -> sign in -> consent (Allow).
JAR=cookies.txt
AUTHZ="$ISSUER/oauth2/authorize?response_type=code&client_id=$CLIENT_ID&redirect_uri=http%3A%2F%2F127.0.0.1%3A9000%2Fcallback&scope=openid+email+profile+contacts%3Aread&state=xyz&code_challenge=$CHALLENGE&code_challenge_method=S256"
LOGIN=$(curl -s -o /dev/null -w '%{redirect_url}' -c $JAR -b $JAR "$AUTHZ")
PAGE=$(curl -s -c $JAR -b $JAR "$LOGIN")
field() { sed -nE "s/.*name=\"$1\" value=\"([^\"]*)\".*/\1/p" | head -1; }
CONSENT=$(curl -s -o /dev/null -w '%{redirect_url}' -c $JAR -b $JAR "$ISSUER/login" \
    --data-urlencode email=ada@example.com --data-urlencode 'password=correct horse battery staple' \
    --data-urlencode "csrf=$(field csrf <<<"$PAGE")" --data-urlencode "req=$(field req <<<"$PAGE")")
PAGE=$(curl -s -c $JAR -b $JAR "$CONSENT")
WORKSPACE=$(sed -nE 's/.*<option value="([^"]*)".*/\1/p' <<<"$PAGE" | head -1)
CALLBACK=$(curl -s -o /dev/null -w '%{redirect_url}' -c $JAR -b $JAR "$ISSUER/consent" \
    --data-urlencode "csrf=$(field csrf <<<"$PAGE")" --data-urlencode "req=$(field req <<<"$PAGE")" \
    --data-urlencode "workspace=$WORKSPACE" --data-urlencode decision=allow)
echo "callback: $CALLBACK"
CODE=$(sed -E 's/.*[?&]code=([^&]+).*/\1/' <<<"$CALLBACK")

# 5. The app redeems the code (client_secret_basic) and calls userinfo.
TOKENS=$(curl -s -u "$CLIENT_ID:$CLIENT_SECRET" "$ISSUER/oauth2/token" \
    -d grant_type=authorization_code -d "code=$CODE" \
    --data-urlencode redirect_uri=http://127.0.0.1:9000/callback -d "code_verifier=$VERIFIER")
echo "token response: $TOKENS"
ACCESS_TOKEN=$(sed -E 's/.*"access_token":"([^"]+)".*/\1/' <<<"$TOKENS")
USERINFO=$(curl -s -H "Authorization: Bearer $ACCESS_TOKEN" "$ISSUER/oauth2/userinfo")
echo "userinfo: $USERINFO"
grep -q '"email":"ada@example.com"' <<<"$USERINFO"

# 6. A backend integration: an API key (shown once), and a 15-minute service token minted with it.
KEY=$("$PORTCULLIS" key create --workspace acme --name "Backend" --scope "contacts:read tokens:mint" --json \
    | sed -E 's/.*"secret":"([^"]+)".*/\1/')
WS=$(curl -s -H "Authorization: Bearer $KEY" "$ISSUER/api/v1/workspace")
echo "workspace: $WS"
grep -q '"slug":"acme"' <<<"$WS"
SERVICE=$(curl -s -X POST -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d '{"scope":"contacts:read","ttl":"15m"}' "$ISSUER/api/v1/service-tokens")
echo "service token: $SERVICE"
grep -q '"expires_in":900' <<<"$SERVICE"
echo "quickstart OK"
