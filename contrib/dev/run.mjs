// contrib/dev/run.mjs: Parley running locally, for trying it out.
//
// Started by contrib/dev/run after the build.  Uses the same harness as the
// end-to-end tests (tests/lib), so what runs here is what the tests check:
// a private PostgreSQL cluster under the build tree with the schema and the
// demo users, parley-token behind nginx (contrib/nginx/parley.conf), the
// relay, and the demo page.  Everything listens on 127.0.0.1 and is stopped
// by PID on Ctrl-C; the cluster's data goes with it.
//
// Environment: PARLEY_DEV_PORT (nginx, default 8080),
// PARLEY_DEV_RELAY_PORT (default 8090), PARLEY_DEV_RELAYS (default 1).

import fs from 'node:fs';
import path from 'node:path';
import { startPostgres } from '../../tests/lib/pg.mjs';
import { startService, builtProgram, topSrcdir, canConnect, signalsStopNormally } from '../../tests/lib/proc.mjs';
import { startToken, startNginx, writeKey, tokenSettings, webDir, tokenBinary } from '../../tests/lib/web.mjs';

const port = Number(process.env.PARLEY_DEV_PORT || 8080);
const relayBase = Number(process.env.PARLEY_DEV_RELAY_PORT || 8090);
const nrelays = Math.max(1, Number(process.env.PARLEY_DEV_RELAYS || 1));

function say(msg) {
  process.stdout.write(`run: ${msg}\n`);
}

async function main() {
  signalsStopNormally();
  for (const p of [port, relayBase])
    if (await canConnect(p))
      throw new Error(`127.0.0.1:${p} is in use (set PARLEY_DEV_PORT / PARLEY_DEV_RELAY_PORT)`);

  say('starting PostgreSQL');
  const pg = await startPostgres({ name: 'run-pg' });
  await pg.installSchema();
  await pg.psqlFile(path.join(topSrcdir, 'schema', 'demo.sql'));

  const dir = webDir('run');
  const key = writeKey(dir, 'HS256');

  say('starting parley-token');
  const token = await startToken({
    name: 'token', dir,
    settings: tokenSettings(pg, key, { PARLEY_COOKIE_SECURE: '0' }),
  });

  const relayBin = builtProgram('relay/parley-relay');
  const relays = [];
  if (fs.existsSync(relayBin)) {
    for (let i = 0; i < nrelays; i++) {
      const rport = relayBase + i;
      say(`starting parley-relay on 127.0.0.1:${rport}`);
      relays.push(await startService({
        name: `relay${i + 1}`, cmd: relayBin, dir,
        env: {
          ...process.env,
          PARLEY_DB: pg.conninfo,
          PARLEY_JWT_KEY_FILE: key.file,
          PARLEY_RELAY_LISTEN: `127.0.0.1:${rport}`,
          PARLEY_RELAY_ID: `dev-relay-${i + 1}`,
        },
        readyPort: rport,
      }));
    }
  } else {
    say(`no relay built (${relayBin}): the page can sign in but not chat`);
  }

  say('starting nginx');
  const nginx = await startNginx({
    name: 'nginx', token, port,
    relay: relays.length ? `127.0.0.1:${relayBase}` : undefined,
  });

  const url = `http://127.0.0.1:${nginx.port}/`;
  process.stdout.write(`
Parley is running at ${url}
  sign in as alice, bob or carol, password parley-demo (two browser windows: two users)
  token service  ${url}auth/   (${path.basename(tokenBinary)}, log ${token.log})
  relays         ${relays.map((r) => r.log).join(', ') || 'none'}
  PostgreSQL     ${pg.conninfo}
  administration psql "${pg.conninfo}"   (SELECT parley.create_user('dave', 'secret'); ...)
Ctrl-C stops everything.
`);

  // Stay up until a signal: the harness then stops every service by PID.
  // Leave early, with the logs kept, if one of them dies.
  await new Promise((resolve) => {
    const t = setInterval(() => {
      for (const s of [token.svc, nginx.svc, ...relays])
        if (s && !s.running()) {
          say(`${s.name} stopped unexpectedly; see ${s.log}`);
          clearInterval(t);
          resolve();
        }
    }, 1000);
  });
  process.env.PARLEY_KEEP_TMP = '1';
  process.exit(1);
}

main().catch((e) => {
  process.stderr.write(`run: ${e.stack || e}\n`);
  process.exit(1);
});
