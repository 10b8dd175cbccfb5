/**
 * Errors of the tenant stores and the admin API: a stable lowercase code and the HTTP status the
 * admin API answers with. Catch sites branch on `code`. Redis outages stay BurrowErrors
 * (BURROW_ERR_BUS_UNAVAILABLE); the admin API reports those as `unavailable`.
 */

export const ADMIN_ERROR_STATUS = {
  invalid: 400,
  unauthorized: 401,
  not_found: 404,
  conflict: 409,
  unavailable: 503,
  internal: 500,
} as const;

export type AdminErrorCode = keyof typeof ADMIN_ERROR_STATUS;

export class AdminError extends Error {
  readonly code: AdminErrorCode;
  /** HTTP status: the code's, unless a more precise one applies (413 or 415 for an `invalid` body). */
  readonly status: number;
  constructor(code: AdminErrorCode, message: string, status?: number) {
    super(message);
    this.name = 'AdminError';
    this.code = code;
    this.status = status ?? ADMIN_ERROR_STATUS[code];
  }
}
