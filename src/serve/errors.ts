// OpenAI's error body, {error: {message, type, param, code}}, with the HTTP status it travels
// under. Every failure a client can cause is an ApiError naming the field (param) it came from.

export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly param: string | null = null, readonly code: string | null = null,
    readonly type = status === 401 ? 'authentication_error' : status === 404 ? 'not_found_error' : status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error') {
    super(message);
  }

  body(): ErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400 naming the field: `invalid(\"'n' must be an integer in [1, 16], got 1000\", 'n')`. */
export const invalid = (message: string, param: string | null = null): ApiError => new ApiError(400, message, param, 'invalid_value');
