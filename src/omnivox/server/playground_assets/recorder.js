// One spoken turn recorded with MediaRecorder, in a format the server decodes.

const FORMATS = [
  ["audio/webm;codecs=opus", "webm"],
  ["audio/ogg;codecs=opus", "ogg"],
  ["audio/webm", "webm"],
  ["audio/ogg", "ogg"],
  ["audio/mp4", "m4a"],
];

// The browser's speech processing (echo cancellation, noise suppression, gain control)
// makes speech recognition worse; echo cancellation is worth it only where the answer
// plays through speakers while the microphone listens (live mode without headphones).
export function microphone(cancelEcho = false) {
  return {
    channelCount: 1,
    echoCancellation: cancelEcho,
    noiseSuppression: false,
    autoGainControl: false,
  };
}

export class Recorder {
  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: microphone() });
    const [mimeType, format] = FORMATS.find(([type]) => MediaRecorder.isTypeSupported(type)) ?? [
      "",
      "webm",
    ];
    this.format = format;
    this.chunks = [];
    this.recorder = new MediaRecorder(this.stream, mimeType ? { mimeType } : {});
    this.recorder.ondataavailable = (event) => {
      if (event.data.size > 0) this.chunks.push(event.data);
    };
    this.recorder.start();
  }

  // Resolves to {blob, format} once the recording is complete; releases the microphone.
  stop() {
    return new Promise((resolve, reject) => {
      this.recorder.onstop = () => {
        this.release();
        resolve({
          blob: new Blob(this.chunks, { type: this.recorder.mimeType }),
          format: this.format,
        });
      };
      this.recorder.onerror = (event) => {
        this.release();
        reject(event.error ?? new Error("the recording failed"));
      };
      this.recorder.stop();
    });
  }

  release() {
    this.stream?.getTracks().forEach((track) => track.stop());
  }
}
