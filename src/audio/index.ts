// Audio in and out (WAV of our own, other containers via ffmpeg), resampling and features
// (STFT, spectrogram, mel, dB, MFCC, Whisper log-mel) equal to torchaudio and transformers.
export { loadAudio, saveWav, decodeAudioFile, decodeAudioBytes, type AudioSource, type LoadAudioOptions, type LoadedAudio } from './load.js';
export { parseWav, readWav, encodeWav, type DecodedAudio, type WavWriteOptions } from './wav.js';
export { decodeWithFfmpeg } from './ffmpeg.js';
export { resample, sincResampleKernel, besselI0, type ResampleOptions } from './resample.js';
export { stft, spectrogram, fft, hannWindow, type StftOptions, type SpectrogramOptions } from './stft.js';
export { melSpectrogram, melscaleFbanks, melFilterValues, hzToMel, melToHz, type MelScale, type MelFbankOptions, type MelSpectrogramOptions } from './mel.js';
export { amplitudeToDB, type AmplitudeToDBOptions } from './db.js';
export { mfcc, createDct, createDctValues, type MfccOptions } from './mfcc.js';
export { whisperLogMel, whisperMelFilters, type WhisperLogMelOptions } from './whisper_features.js';
export { espeakToWav, espeakCorpus, corpusSentence, type SpeakOptions } from './espeak.js';
