import type { Server } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import { getConnInfo } from '@hono/node-server/conninfo';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { messageOf } from '../../errors.js';
import { DEVICE_ID } from '../../ids.js';
import type { Logger } from '../../log.js';
import { parseYuan } from '../../money.js';
import type { BackendStore, BoxPolicy } from '../store.js';
import { boxPage, fleetView } from './figures.js';
import { pickLang, t, type Lang } from './i18n.js';
import type { BackendMetrics } from './metrics.js';
import { ADMIN_NAME, verifyPassword } from './password.js';
import { LoginLimit, SESSION_COOKIE, SESSION_MS, Sessions, sameToken, type Session } from './sessions.js';
import { CSS, actionsPage, boxPageView, fleetPage, loginPage, messagePage, problemsPage, revokePage, type PageContext } from './views.js';

/**
 * The admin listener of `scanbox backend` (contract §11), apart from the boxes' port: /metrics for Prometheus
 * and the web console. The console knows nothing of WeChat Pay: it reads the store and calls the same revoke as
 * the CLI (the running server's, which also cuts the box's open connections). Without a session it shows only
 * its login page (and its stylesheet); /metrics is open to whoever reaches the listener (loopback by default;
 * on the LAN only with TLS), as Prometheus scrapes it without a login.
 *
 * Every admin action (login, refused login, logout, revoke, policy) is kept in the store with who and when.
 */

export interface ConsoleServerOptions {
  listen: { host: string; port: number };
  /** The backend's server certificate, when the console listens with TLS (SCANBOX_BACKEND_ADMIN_TLS=on). */
  tls: { certPem: string; keyPem: string } | null;
  store: BackendStore;
  metrics: BackendMetrics;
  /** Revokes a box and cuts its connections (BackendServer.revoke). */
  revoke(deviceId: string): Promise<boolean>;
  log: Logger;
  now?: () => number;
}

const LANG_COOKIE = 'scanbox_lang';

type Env = { Variables: { lang: Lang; session: Session | null; token: string | undefined } };

export class ConsoleServer {
  readonly origin: string;
  private constructor(
    private readonly server: Server,
    origin: string,
  ) {
    this.origin = origin;
  }

  static async start(o: ConsoleServerOptions): Promise<ConsoleServer> {
    const app = consoleApp(o);
    const server = (
      o.tls
        ? createAdaptorServer({ fetch: app.fetch, createServer: https.createServer, serverOptions: { cert: o.tls.certPem, key: o.tls.keyPem, minVersion: 'TLSv1.2' } })
        : createAdaptorServer({ fetch: app.fetch })
    ) as Server;
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.listen.port, o.listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address() as AddressInfo;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return new ConsoleServer(server, `${o.tls ? 'https' : 'http'}://${host}:${address.port}`);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

export function consoleApp(o: ConsoleServerOptions): Hono<Env> {
  const now = o.now ?? Date.now;
  const sessions = new Sessions(now);
  const limit = new LoginLimit(now);
  const secure = o.tls !== null;
  const app = new Hono<Env>();

  const record = (admin: string, action: string, deviceId: string | null, detail: string): Promise<void> =>
    o.store.recordAdminAction({ admin, action, deviceId, detail, at: now() }).catch((error: unknown) => {
      o.log.error('console: cannot record an admin action', { admin, action, error: messageOf(error) });
    });

  app.use('*', async (c, next) => {
    await next();
    c.header('content-security-policy', "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
    c.header('x-content-type-options', 'nosniff');
    c.header('referrer-policy', 'no-referrer');
    c.header('cache-control', 'no-store');
  });
  app.use('*', bodyLimit({ maxSize: 16 * 1024, onError: (c) => c.text('request too large', 413) }));

  app.get('/metrics', async (c) => {
    const text = await o.metrics.text();
    return c.body(text, 200, { 'content-type': o.metrics.contentType });
  });
  app.get('/static/console.css', (c) => c.body(CSS, 200, { 'content-type': 'text/css; charset=utf-8' }));

  // Language and session for everything else.
  app.use('*', async (c, next) => {
    const asked = c.req.query('lang');
    if (asked === 'en' || asked === 'zh') setCookie(c, LANG_COOKIE, asked, { path: '/', sameSite: 'Strict', httpOnly: true, secure, maxAge: 365 * 86400 });
    c.set('lang', pickLang(asked, getCookie(c, LANG_COOKIE), c.req.header('accept-language')));
    const token = getCookie(c, SESSION_COOKIE);
    let session = sessions.get(token);
    // An admin removed with `scanbox backend admin remove` is out at the next request.
    if (session !== null && (await o.store.admin(session.admin)) === undefined) {
      sessions.closeAdmin(session.admin);
      session = null;
    }
    c.set('session', session);
    c.set('token', token);
    const open = c.req.path === '/login';
    if (session === null && !open) {
      if (c.req.method === 'GET' || c.req.method === 'HEAD') return c.redirect('/login', 303);
      return c.text('log in first', 403);
    }
    if (c.req.method === 'POST' && !open) {
      const body = await c.req.parseBody();
      if (!sameToken(body._csrf, session!.csrf)) {
        o.log.warning('console: a form without its CSRF token refused', { admin: session!.admin, path: c.req.path });
        return c.html(messagePage(ctx(c), t(c.get('lang'), 'forbidden'), t(c.get('lang'), 'forbidden')), 403);
      }
    }
    await next();
  });

  const ctx = (c: Context<Env>): PageContext => ({ lang: c.get('lang'), admin: c.get('session')?.admin ?? null, csrf: c.get('session')?.csrf ?? null, now: now(), path: c.req.path });

  app.get('/login', (c) => {
    if (c.get('session') !== null) return c.redirect('/', 303);
    return c.html(loginPage(ctx(c), null, ''));
  });

  app.post('/login', async (c) => {
    const lang = c.get('lang');
    const body = await c.req.parseBody();
    const name = typeof body.name === 'string' ? body.name.trim() : '';
    const password = typeof body.password === 'string' ? body.password : '';
    const address = remoteAddress(c);
    const keys = [`address ${address}`, `name ${name.toLowerCase()}`];
    const shownName = ADMIN_NAME.test(name) ? name : '';
    if (limit.blocked(keys)) {
      o.log.warning('console: login refused, too many attempts', { admin: shownName || '-', from: address });
      return c.html(loginPage(ctx(c), t(lang, 'loginBlocked'), shownName), 429);
    }
    const admin = ADMIN_NAME.test(name) && password.length <= 200 ? await o.store.admin(name) : undefined;
    const ok = await verifyPassword(password.slice(0, 200), admin?.passwordHash ?? null);
    if (!ok || admin === undefined) {
      limit.fail(keys);
      o.log.warning('console: login refused', { admin: shownName || '-', from: address });
      await record(shownName || '?', 'login_refused', null, `from ${address}`);
      return c.html(loginPage(ctx(c), t(lang, 'loginFailed'), shownName), 401);
    }
    const old = c.get('token');
    sessions.close(old);
    const { token } = sessions.open(admin.name);
    setCookie(c, SESSION_COOKIE, token, { path: '/', httpOnly: true, secure, sameSite: 'Strict', maxAge: Math.floor(SESSION_MS / 1000) });
    o.log.info('console: login', { admin: admin.name, from: address });
    await record(admin.name, 'login', null, `from ${address}`);
    return c.redirect('/', 303);
  });

  app.post('/logout', async (c) => {
    const s = c.get('session')!;
    sessions.close(c.get('token'));
    deleteCookie(c, SESSION_COOKIE, { path: '/', secure });
    await record(s.admin, 'logout', null, '');
    return c.redirect('/login', 303);
  });

  app.get('/', async (c) => c.html(fleetPage(ctx(c), await fleetView(o.store, now()))));

  app.get('/problems', async (c) => c.html(problemsPage(ctx(c), (await fleetView(o.store, now())).problems)));

  app.get('/actions', async (c) => c.html(actionsPage(ctx(c), await o.store.adminActions({ limit: 200 }))));

  app.get('/box/:id', async (c) => {
    const id = c.req.param('id');
    const page = DEVICE_ID.test(id) ? await boxPage(o.store, id, now()) : null;
    if (page === null) return c.html(messagePage(ctx(c), t(c.get('lang'), 'notFound'), id), 404);
    return c.html(boxPageView(ctx(c), page));
  });

  app.get('/box/:id/revoke', async (c) => {
    const id = c.req.param('id');
    if (!DEVICE_ID.test(id) || (await o.store.box(id)) === undefined) return c.html(messagePage(ctx(c), t(c.get('lang'), 'notFound'), id), 404);
    return c.html(revokePage(ctx(c), id));
  });

  app.post('/box/:id/revoke', async (c) => {
    const id = c.req.param('id');
    const lang = c.get('lang');
    const admin = c.get('session')!.admin;
    const body = await c.req.parseBody();
    if (body.confirm !== 'yes') return c.html(revokePage(ctx(c), id), 400);
    if (!DEVICE_ID.test(id) || !(await o.revoke(id))) return c.html(messagePage(ctx(c), t(lang, 'notFound'), id), 404);
    o.log.warning('console: box revoked', { admin, box: id });
    await record(admin, 'revoke', id, '');
    return c.redirect(`/box/${id}`, 303);
  });

  app.post('/box/:id/policy', async (c) => {
    const id = c.req.param('id');
    const lang = c.get('lang');
    const admin = c.get('session')!.admin;
    const body = await c.req.parseBody();
    const rawMax = typeof body.max_amount === 'string' ? body.max_amount.trim() : '';
    const refunds = body.refunds;
    const max = rawMax === '' ? null : parseYuan(rawMax);
    if ((rawMax !== '' && (max === null || max <= 0 || max > 10_000_000_000)) || (refunds !== 'default' && refunds !== 'on' && refunds !== 'off')) {
      return c.html(messagePage(ctx(c), t(lang, 'badInput'), `${rawMax.slice(0, 20)} ${String(refunds).slice(0, 10)}`), 400);
    }
    const policy: BoxPolicy = { maxAmountFen: max, refunds: refunds === 'default' ? null : refunds };
    if (!DEVICE_ID.test(id) || !(await o.store.setPolicy(id, policy))) return c.html(messagePage(ctx(c), t(lang, 'notFound'), id), 404);
    const detail = `max_amount=${max === null ? 'default' : max} refunds=${policy.refunds ?? 'default'}`;
    o.log.warning('console: box policy changed', { admin, box: id, policy: detail });
    await record(admin, 'policy', id, detail);
    return c.redirect(`/box/${id}`, 303);
  });

  app.onError((error, c) => {
    o.log.error('console: request failed', { path: c.req.path, error: messageOf(error) });
    return c.text('internal error', 500);
  });
  return app;
}

function remoteAddress(c: Context): string {
  try {
    return getConnInfo(c).remote.address ?? '-';
  } catch {
    return '-';
  }
}
