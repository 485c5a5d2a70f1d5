import type { SecretRegistry } from '../platform/mask.js';
import type { FetchedSecret } from './fetch.js';

/** Masks every fetched value (and its forms) under its variable name, before any use; not-secret values are left alone. */
export function registerFetched(fetched: FetchedSecret[], registry: SecretRegistry): void {
  for (const f of fetched) if (!f.notSecret) registry.register(f.value, { name: f.name });
}
