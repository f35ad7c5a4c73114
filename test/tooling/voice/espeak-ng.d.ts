// The espeak-ng npm package ships no types: an Emscripten module factory with the CLI's arguments.
declare module 'espeak-ng' {
  interface ESpeakModule {
    FS: { readFile(path: string): Uint8Array };
  }
  export default function ESpeakNg(options: { arguments: string[] }): Promise<ESpeakModule>;
}
