/** Bun imports these as text (`with { type: "text" }`), which embeds them in the compiled binary. */
declare module "*.sql" {
  const text: string;
  export default text;
}
