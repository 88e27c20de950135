// Asks omnivox through JavaScript clients' default Responses paths; prints one JSON line.
// Usage: node responses_clients.mjs <base URL ending in /v1> <model>
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, streamText } from 'ai';
import OpenAI from 'openai';

const [baseURL, model] = process.argv.slice(2);
const apiKey = 'unused-on-loopback';

// The Vercel AI SDK: openai(model) is its Responses API model.
const provider = createOpenAI({ baseURL, apiKey });
const generated = await generateText({ model: provider(model), prompt: 'hello there' });
const streamed = streamText({ model: provider(model), prompt: 'stream me' });
const pieces = [];
for await (const piece of streamed.textStream) pieces.push(piece);

// The OpenAI Node SDK.
const client = new OpenAI({ baseURL, apiKey });
const response = await client.responses.create({ model, input: 'from node' });
const events = [];
for await (const event of await client.responses.create({ model, input: 'node stream', stream: true })) {
  events.push(event.type);
}

console.log(JSON.stringify({
  vercel: {
    text: generated.text,
    finishReason: generated.finishReason,
    responseId: generated.response.id,
    outputTokens: generated.usage.outputTokens,
    pieces,
    streamedFinishReason: await streamed.finishReason,
  },
  node: { text: response.output_text, id: response.id, events },
}));
