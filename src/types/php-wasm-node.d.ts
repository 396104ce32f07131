// The per-version php-wasm packages ship no type declarations; this is the one function used.
declare module "@php-wasm/node-8-3" {
  export function getPHPLoaderModule(): Promise<unknown>;
}
declare module "@php-wasm/node-8-4" {
  export function getPHPLoaderModule(): Promise<unknown>;
}
