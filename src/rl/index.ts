// Public surface of src/rl: GRPO (advantages, loss, rollouts, reward functions, the Trainer step)
// and PPO (GAE, whitening, KL-penalised rewards, clipped policy and value losses, experience, the Trainer step).
export { groupAdvantages, gae, whiten, type RewardScaling } from './advantages.js';
export { GRPO_LOSS_TYPES, type GrpoLossType, type GrpoInputs, type GrpoOptions, type GrpoOutput, grpoLoss } from './grpo_loss.js';
export { klPenalizedRewards, ppoPolicyLoss, ppoValueLoss } from './ppo_loss.js';
export { PromptDataset, type PromptBatch, type PromptExample, type LoadPromptOptions, loadPromptData } from './prompts.js';
export { type RewardFunction, type RewardInput, correctness, formatReward, lengthReward, loadRewardModule, scoreCompletions } from './rewards.js';
export { type Rollout, type RolloutOptions, sampleCompletions } from './rollout.js';
export { type GrpoConfig, type ScoredRollout, grpoStep, scoredRollout } from './grpo_step.js';
export { type Experience, type ExperienceModels, type ExperienceOptions, collectExperience, completionValues, selectRows } from './ppo_experience.js';
export { ActorCritic, type PpoBatch, type PpoConfig, ppoStep } from './ppo_step.js';
