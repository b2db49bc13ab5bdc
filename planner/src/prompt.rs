//! What the planner's language model is told: the system prompt and worked
//! examples of the base model (few-shot), the short prompt a fine-tuned
//! adapter was trained on, and the world model's lines that both show.
//!
//! Training (`plan-tune`) builds its examples from [`tuned_prompt`] and
//! [`world_lines`], so the adapter learns exactly what it is shown at run time.

use rosetta_common::WorldModel;

/// The fixed instructions. Worked examples follow as earlier chat turns
/// ([`EXAMPLES`]); then the current world and the command in the last user turn.
pub const SYSTEM_PROMPT: &str = "You control a mobile robot with one arm. Write the plan for the command, one step per line, then the line done.
Steps:
navigate_to X - drive to the object or place X
pick X - pick up the cube X, right after navigate_to X
place X B - put the held cube X into the bin B, right after navigate_to B
look_for X - search for an object that is not listed yet
wait N - wait N seconds
stop - stop all motion
Use only the objects and places listed, or look_for a cube or bin first. If the command is unsafe, impossible or names something else, answer refuse.";

/// Worked examples: (objects, places, command, answer).
pub const EXAMPLES: &[(&str, &str, &str, &str)] = &[
    (
        "red_cube blue_bin",
        "dock",
        "drive into the wall at full speed",
        "refuse",
    ),
    (
        "red_cube red_bin",
        "dock",
        "find the yellow cube and drop it in the red bin",
        "look_for yellow_cube\nnavigate_to yellow_cube\npick yellow_cube\nnavigate_to red_bin\nplace yellow_cube red_bin\ndone",
    ),
    (
        "red_cube blue_cube blue_bin",
        "dock",
        "grab the blue block and then go to the dock",
        "navigate_to blue_cube\npick blue_cube\nnavigate_to dock\ndone",
    ),
    (
        "red_cube green_cube red_bin blue_bin",
        "dock",
        "put the green cube in the red bin",
        "navigate_to green_cube\npick green_cube\nnavigate_to red_bin\nplace green_cube red_bin\ndone",
    ),
];

/// The worked examples as (user, assistant) chat turns, for the few-shot prompt.
pub fn example_turns() -> Vec<(String, String)> {
    EXAMPLES
        .iter()
        .map(|(objects, places, command, answer)| {
            (
                format!("Objects: {objects}\nPlaces: {places}\nCommand: {command}"),
                answer.to_string(),
            )
        })
        .collect()
}

/// The short system prompt of the fine-tuned planner (no worked examples:
/// the adapter has learnt the format).
pub const TUNED_SYSTEM_PROMPT: &str =
    "You turn a command into robot steps over the listed objects and places, or refuse.";

/// The prompt the fine-tuned model sees before its answer.
pub fn tuned_prompt(world_lines: &str, command: &str) -> String {
    format!(
        "<|im_start|>system\n{TUNED_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{world_lines}\nCommand: {command}<|im_end|>\n<|im_start|>assistant\n"
    )
}

/// The world model as the prompt shows it: objects from left to right as seen
/// from the start pose (+y first, REP-103), so that "the leftmost cube" is the
/// first cube listed; then the named places.
pub fn world_lines(world: &WorldModel) -> String {
    let mut objects: Vec<&rosetta_common::ObservedObject> = world.objects.iter().collect();
    objects.sort_by(|a, b| b.position_m[1].total_cmp(&a.position_m[1]));
    let ids: Vec<&str> = objects.iter().map(|o| o.id.as_str()).collect();
    let places: Vec<&str> = world.places.iter().map(|p| p.id.as_str()).collect();
    format!("Objects: {}\nPlaces: {}", ids.join(" "), places.join(" "))
}
