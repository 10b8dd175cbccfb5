/**
 * The admin API (/v1) as a Fastify plugin for the admin listener: tenants, tokens, live tunnels
 * and connection history. Every route needs `Authorization: Bearer <admin token>` (compared in
 * constant time, before the body is read); every body, param and query is checked by a JSON
 * schema (additionalProperties false, no type coercion). Errors are `{ error: { code, message } }`
 * with the status of the code (AdminError). It keeps no state: the store and the live-tunnel
 * source are passed in.
 */
import { BurrowError } from '@burrow/protocol';
import type { FastifyError, FastifyInstance, FastifyPluginAsync, FastifyReply } from 'fastify';
import { AdminError } from './adminError';
import {
  HISTORY_MAX_EVENTS,
  MAX_RESERVED_NAMES,
  MAX_TENANT_NAME_CHARS,
  MAX_TOKEN_DESCRIPTION_CHARS,
  QUOTA_MAX,
  RESERVED_NAME_PATTERN,
  TENANT_ID_PATTERN,
} from './tenantRules';
import { safeEqual } from './tokens';
import type { LiveTunnels, TenantQuotas, TenantStore } from './types';

export interface AdminApiOptions {
  /** Bearer token every /v1 request must carry. */
  readonly token: string;
  readonly store: TenantStore;
  readonly tunnels: LiveTunnels;
}

/** Admin requests are small JSON documents. */
export const ADMIN_BODY_LIMIT_BYTES = 64 * 1024;

const TOKEN_ID_PATTERN = '^[a-z2-7]{12}$';

const quotasSchema = {
  type: 'object',
  additionalProperties: false,
  properties: Object.fromEntries(Object.entries(QUOTA_MAX).map(([key, max]) => [key, { type: 'integer', minimum: 1, maximum: max }])),
};
const reservedNamesSchema = {
  type: 'array',
  maxItems: MAX_RESERVED_NAMES,
  items: { type: 'string', pattern: RESERVED_NAME_PATTERN },
};
const nameSchema = { type: 'string', minLength: 1, maxLength: MAX_TENANT_NAME_CHARS, pattern: '\\S' };
const tenantParams = {
  type: 'object',
  additionalProperties: false,
  required: ['id'],
  properties: { id: { type: 'string', pattern: TENANT_ID_PATTERN } },
};
const noQuery = { type: 'object', additionalProperties: false, properties: {} };

const createTenantSchema = {
  querystring: noQuery,
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['name'],
    properties: { id: { type: 'string', pattern: TENANT_ID_PATTERN }, name: nameSchema, quotas: quotasSchema, reservedNames: reservedNamesSchema },
  },
};
const patchTenantSchema = {
  params: tenantParams,
  querystring: noQuery,
  body: {
    type: 'object',
    additionalProperties: false,
    minProperties: 1,
    properties: { name: nameSchema, quotas: quotasSchema, reservedNames: reservedNamesSchema },
  },
};
const createTokenSchema = {
  params: tenantParams,
  querystring: noQuery,
  body: {
    type: 'object',
    additionalProperties: false,
    properties: { description: { type: 'string', maxLength: MAX_TOKEN_DESCRIPTION_CHARS } },
  },
};
const tokenParams = {
  params: { type: 'object', additionalProperties: false, required: ['tokenId'], properties: { tokenId: { type: 'string', pattern: TOKEN_ID_PATTERN } } },
  querystring: noQuery,
};
const tunnelsSchema = {
  querystring: { type: 'object', additionalProperties: false, properties: { tenant: { type: 'string', pattern: TENANT_ID_PATTERN } } },
};
const tunnelParams = {
  params: { type: 'object', additionalProperties: false, required: ['label'], properties: { label: { type: 'string', pattern: RESERVED_NAME_PATTERN } } },
  querystring: noQuery,
};
const historySchema = {
  params: tenantParams,
  querystring: { type: 'object', additionalProperties: false, properties: { limit: { type: 'string', pattern: '^[1-9][0-9]{0,5}$' } } },
};

interface TenantBody {
  id?: string;
  name: string;
  quotas?: TenantQuotas;
  reservedNames?: string[];
}

function sendError(reply: FastifyReply, err: AdminError): FastifyReply {
  return reply
    .code(err.status)
    .header('cache-control', 'no-store')
    .type('application/json; charset=utf-8')
    .send({ error: { code: err.code, message: err.message } });
}

/** Any error a route or Fastify raises, as an AdminError. */
export function toAdminError(err: unknown): AdminError {
  if (err instanceof AdminError) return err;
  if (err instanceof BurrowError) {
    return err.code === 'BURROW_ERR_BUS_UNAVAILABLE'
      ? new AdminError('unavailable', `${err.message}; try again when Redis is back`)
      : new AdminError('internal', `${err.code}: ${err.message}`);
  }
  const fe = err as Partial<FastifyError>;
  if (fe.validation !== undefined) return new AdminError('invalid', fe.message ?? 'request is not valid');
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    // Fastify's own 4xx (malformed JSON, body too large, wrong content type) keep their status.
    return new AdminError('invalid', fe.message ?? 'request is not valid', fe.statusCode);
  }
  return new AdminError('internal', 'internal error; see the relay log');
}

const notFound = (what: string): AdminError => new AdminError('not_found', what);

/** The /v1 routes; register with `{ prefix: '/v1', ...options }`. */
export const adminApi: FastifyPluginAsync<AdminApiOptions> = async (app: FastifyInstance, options: AdminApiOptions) => {
  const { store, tunnels, token } = options;
  if (typeof token !== 'string' || token === '') throw new TypeError('adminApi needs a token');

  app.addHook('onRequest', async (req, reply) => {
    const header = req.headers.authorization;
    const m = typeof header === 'string' ? /^Bearer +(\S+) *$/i.exec(header) : null;
    if (m === null || !safeEqual(m[1] as string, token)) {
      reply.header('www-authenticate', 'Bearer realm="burrow-admin"');
      throw new AdminError('unauthorized', m === null ? 'send the admin token as "Authorization: Bearer <token>"' : 'the admin token is not valid');
    }
  });
  app.addHook('onSend', async (_req, reply) => {
    reply.header('cache-control', 'no-store');
  });
  app.setErrorHandler((err, req, reply) => {
    const e = toAdminError(err);
    if (e.code === 'internal') req.log.error({ err }, 'admin API error');
    return sendError(reply, e);
  });
  app.setNotFoundHandler((req, reply) => sendError(reply, notFound(`no admin route ${req.method} ${req.url.split('?')[0]}`)));

  app.post<{ Body: TenantBody }>('/tenants', { schema: createTenantSchema }, async (req, reply) => {
    const tenant = await store.createTenant(req.body);
    req.log.info({ admin: 'tenant.create', tenant: tenant.id }, 'tenant created');
    return reply.code(201).send(tenant);
  });

  app.get('/tenants', { schema: { querystring: noQuery } }, async () => ({ tenants: await store.listTenants() }));

  app.get<{ Params: { id: string } }>('/tenants/:id', { schema: { params: tenantParams, querystring: noQuery } }, async (req) => {
    const tenant = await store.getTenant(req.params.id);
    if (tenant === undefined) throw notFound(`no tenant ${req.params.id}`);
    return tenant;
  });

  app.patch<{ Params: { id: string }; Body: Omit<TenantBody, 'id' | 'name'> & { name?: string } }>(
    '/tenants/:id',
    { schema: patchTenantSchema },
    async (req) => {
      const tenant = await store.updateTenant(req.params.id, req.body);
      if (tenant === undefined) throw notFound(`no tenant ${req.params.id}`);
      req.log.info({ admin: 'tenant.update', tenant: tenant.id, fields: Object.keys(req.body) }, 'tenant updated');
      return tenant;
    },
  );

  app.delete<{ Params: { id: string } }>('/tenants/:id', { schema: { params: tenantParams, querystring: noQuery } }, async (req) => {
    if (!(await store.deleteTenant(req.params.id))) throw notFound(`no tenant ${req.params.id}`);
    req.log.info({ admin: 'tenant.delete', tenant: req.params.id }, 'tenant deleted; its tokens are revoked');
    return { deleted: true, id: req.params.id };
  });

  app.post<{ Params: { id: string }; Body: { description?: string } }>(
    '/tenants/:id/tokens',
    {
      schema: createTokenSchema,
      // A token needs no body: an absent one is an empty object.
      preValidation: async (req) => {
        if (req.body === undefined || req.body === null) req.body = {};
      },
    },
    async (req, reply) => {
      const created = await store.createToken(req.params.id, req.body.description);
      req.log.info({ admin: 'token.create', tenant: req.params.id, token: created.info.id }, 'token created');
      return reply.code(201).send(created);
    },
  );

  app.get<{ Params: { id: string } }>('/tenants/:id/tokens', { schema: { params: tenantParams, querystring: noQuery } }, async (req) => {
    if ((await store.getTenant(req.params.id)) === undefined) throw notFound(`no tenant ${req.params.id}`);
    return { tokens: await store.listTokens(req.params.id) };
  });

  app.delete<{ Params: { tokenId: string } }>('/tokens/:tokenId', { schema: tokenParams }, async (req) => {
    if (!(await store.revokeToken(req.params.tokenId))) throw notFound(`no token ${req.params.tokenId}`);
    req.log.info({ admin: 'token.revoke', token: req.params.tokenId }, 'token revoked');
    return { revoked: true, id: req.params.tokenId };
  });

  app.get<{ Querystring: { tenant?: string } }>('/tunnels', { schema: tunnelsSchema }, async (req) => {
    const all = await tunnels.list();
    const { tenant } = req.query;
    return { tunnels: tenant === undefined ? all : all.filter((t) => t.tenant === tenant) };
  });

  app.delete<{ Params: { label: string } }>('/tunnels/:label', { schema: tunnelParams }, async (req) => {
    if (!(await tunnels.disconnect(req.params.label))) throw notFound(`no session holds ${req.params.label}`);
    req.log.info({ admin: 'tunnel.disconnect', label: req.params.label }, 'tunnel disconnected');
    return { disconnected: true, label: req.params.label };
  });

  app.get<{ Params: { id: string }; Querystring: { limit?: string } }>('/tenants/:id/history', { schema: historySchema }, async (req) => {
    if ((await store.getTenant(req.params.id)) === undefined) throw notFound(`no tenant ${req.params.id}`);
    const limit = req.query.limit === undefined ? undefined : Math.min(Number(req.query.limit), HISTORY_MAX_EVENTS);
    return { events: await store.history(req.params.id, limit) };
  });
};
