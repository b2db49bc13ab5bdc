//! The grounder: the reader's clauses, resolved against the world model,
//! become the plan's steps and the command's goal conditions.
//!
//! Deterministic: each noun phrase resolves through `common::ground` to
//! instances (quantifiers expanded, exceptions removed, "it" and "the other
//! one" from what the command named before, "the bin of its colour" per
//! object), or to a refusal that says why ("which cube: red_cube or
//! green_cube?"). A put whose goal already holds is left out, so a re-plan
//! after a goal check does only what is left.

use rosetta_common::goal::Goal;
use rosetta_common::ground::{ground, seen_from, Expression, Grounding, Selector};
use rosetta_common::world::object_id;
use rosetta_common::{ObjectKind, ObservedObject, Pose2D, Skill, WorldModel};

use crate::reader::{Clause, Item, NounPhrase, Quantity, ReadError};

/// A plan and what it is for.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub steps: Vec<Skill>,
    pub goals: Vec<Goal>,
    /// Whether some phrase picks among the things there are ("the leftmost
    /// cube", "all the cubes", "the other bin"), so that a thing not seen
    /// yet could change the plan.
    pub compares: bool,
    /// What each referring expression of the command resolved to, in the
    /// order the words came (what the episode shows at grounding).
    pub referents: Vec<Referent>,
}

/// A referring expression's words and the instances they picked.
#[derive(Debug, Clone, PartialEq)]
pub struct Referent {
    pub words: String,
    pub ids: Vec<String>,
}

/// Why a command cannot be planned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("\"{phrase}\" is ambiguous: {why}; which one: {}?", candidates.join(" or "))]
    Ambiguous {
        phrase: String,
        why: String,
        candidates: Vec<String>,
    },
    #[error("\"{phrase}\": {why}")]
    NotFound { phrase: String, why: String },
    /// A plainly named object ("the yellow cube") that perception has not
    /// reported, while others of its kind are known: it may stand where the
    /// camera has not looked yet. The node looks around once and plans
    /// again; then it is refused as not found.
    #[error("\"{phrase}\": {why}")]
    NotSeen { phrase: String, why: String },
    #[error("I can't pick up {0}: only cubes can be grasped")]
    NotGraspable(String),
    #[error("I can't put anything into {0}: it is not a container")]
    NotAContainer(String),
    #[error("I can't put {0} into itself")]
    SameObject(String),
    #[error("put {0} where? Name the container")]
    NoTarget(String),
    #[error("I can hold one thing at a time; \"{0}\" names {1}")]
    OneAtATime(String, usize),
    #[error("I hold {0} and can only put it into a container before picking up {1}")]
    HandsFull(String, String),
    #[error("\"{0}\": what does that refer to? Name the object")]
    NoAntecedent(String),
    #[error("a wait of {0} s is outside 0..{1} s")]
    BadWait(f64, f64),
    #[error("I don't know the place \"{0}\"")]
    UnknownPlace(String),
    #[error("\"{phrase}\": I have not seen any {kind} yet")]
    Unexplored { phrase: String, kind: String },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Something to pick up.
    Object,
    /// Something to put things into.
    Container,
    /// Something to drive to or look for.
    Any,
}

/// The state of the world as the plan so far leaves it.
struct Ctx<'w> {
    world: &'w WorldModel,
    steps: Vec<Skill>,
    holding: Option<String>,
    at: Option<String>,
    /// (object, container) the plan put things into, in order.
    placed: Vec<(String, String)>,
    /// What "it" means now, and what "the other one" must avoid.
    last_objects: Vec<String>,
    last_target: Option<String>,
    mentioned: Vec<String>,
    pending_target: Option<NounPhrase>,
    /// Ids the plan must look for first (not in the world model).
    unseen: Vec<String>,
    /// The last clause was a drive to this target.
    went: Option<String>,
    /// A bare noun phrase ("the yellow cube, put it ...") that no later
    /// clause has referred to yet: words whose meaning would be lost.
    unused_topic: Option<String>,
    /// "clear the table" with nothing after it yet.
    heading: Option<String>,
    referents: Vec<Referent>,
    /// Some phrase picks among the things there are ("the leftmost cube",
    /// "all the cubes", "the other one"): the choice depends on seeing all.
    compares: bool,
}

impl<'w> Ctx<'w> {
    fn new(world: &'w WorldModel) -> Self {
        Self {
            world,
            steps: vec![],
            holding: None,
            at: None,
            placed: vec![],
            last_objects: vec![],
            last_target: None,
            mentioned: vec![],
            pending_target: None,
            unseen: vec![],
            went: None,
            unused_topic: None,
            heading: None,
            referents: vec![],
            compares: false,
        }
    }

    fn kind(&self, id: &str) -> Option<ObjectKind> {
        self.world
            .get(id)
            .map(|o| o.kind)
            .or_else(|| rosetta_common::world::parse_object_id(id).map(|(_, k)| k))
    }

    fn navigate(&mut self, target: &str) {
        if self.at.as_deref() != Some(target) {
            self.steps.push(Skill::NavigateTo {
                target: target.to_string(),
            });
            self.at = Some(target.to_string());
        }
    }

    /// Whether `object` already lies in `container` (by this plan, or in the world).
    fn already_in(&self, object: &str, container: &str) -> bool {
        if let Some((_, c)) = self.placed.iter().rev().find(|(o, _)| o == object) {
            return c == container;
        }
        self.holding.as_deref() != Some(object)
            && Goal::InContainer {
                object: object.into(),
                container: container.into(),
            }
            .holds_in(self.world, None)
    }

    fn put(&mut self, object: &str, container: &str) -> Result<(), PlanError> {
        if object == container {
            return Err(PlanError::SameObject(object.into()));
        }
        if self.kind(object).is_some_and(|k| !k.is_graspable()) {
            return Err(PlanError::NotGraspable(object.into()));
        }
        if self.kind(container).is_some_and(|k| !k.is_container()) {
            return Err(PlanError::NotAContainer(container.into()));
        }
        if self.already_in(object, container) {
            return Ok(());
        }
        if self.holding.as_deref() != Some(object) {
            self.pick(object)?;
        }
        self.navigate(container);
        self.steps.push(Skill::Place {
            object: object.into(),
            target: container.into(),
        });
        self.holding = None;
        self.placed.push((object.into(), container.into()));
        Ok(())
    }

    fn pick(&mut self, object: &str) -> Result<(), PlanError> {
        if self.kind(object).is_some_and(|k| !k.is_graspable()) {
            return Err(PlanError::NotGraspable(object.into()));
        }
        if let Some(h) = &self.holding {
            if h == object {
                return Ok(());
            }
            return Err(PlanError::HandsFull(h.clone(), object.into()));
        }
        self.navigate(object);
        self.steps.push(Skill::Pick {
            object: object.into(),
        });
        self.holding = Some(object.into());
        self.placed.retain(|(o, _)| o != object);
        Ok(())
    }

    fn remember(&mut self, ids: &[String]) {
        for id in ids {
            if !self.mentioned.contains(id) {
                self.mentioned.push(id.clone());
            }
        }
    }

    /// Resolves a noun phrase to instance ids.
    fn resolve(&mut self, np: &NounPhrase, role: Role) -> Result<Vec<String>, PlanError> {
        let mut ids: Vec<String> = Vec::new();
        for item in &np.items {
            for id in self.resolve_item(item, np, role)? {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        let mut excluded = Vec::new();
        for item in &np.except {
            let one = NounPhrase {
                quantity: Quantity::Listed,
                items: vec![item.clone()],
                except: vec![],
                words: np.words.clone(),
            };
            excluded.extend(self.resolve_item(item, &one, role)?);
        }
        let matched_any = !ids.is_empty();
        ids.retain(|id| !excluded.contains(id));
        let described: Vec<String> = np
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Expr { expr, .. } => Some(expr.what.noun()),
                _ => None,
            })
            .collect();
        if !matched_any && !described.is_empty() && described.len() == np.items.len() {
            // "the mugs" before any mug was seen: look first, then say so.
            return Err(PlanError::Unexplored {
                phrase: np.words.clone(),
                kind: described.join(" or "),
            });
        }
        if ids.is_empty() {
            return Err(PlanError::NotFound {
                phrase: np.words.clone(),
                why: "nothing is left of it".into(),
            });
        }
        if np.quantity == Quantity::Both && ids.len() != 2 {
            return Err(PlanError::Ambiguous {
                phrase: np.words.clone(),
                why: format!("\"both\" but {} fit", ids.len()),
                candidates: ids,
            });
        }
        self.remember(&ids);
        let referent = Referent {
            words: np.words.clone(),
            ids: ids.clone(),
        };
        if !self.referents.contains(&referent) {
            self.referents.push(referent);
        }
        Ok(ids)
    }

    /// Whether an object can play the role: anything graspable is picked,
    /// any container takes things, and anything can be driven to.
    fn role_fits(role: Role, o: &ObservedObject) -> bool {
        match role {
            Role::Object => o.kind.is_graspable(),
            Role::Container => o.kind.is_container(),
            Role::Any => true,
        }
    }

    /// What a role is called in a reason ("object", "bin").
    fn role_noun(role: Role) -> &'static str {
        match role {
            Role::Container => "bin",
            Role::Object | Role::Any => "object",
        }
    }

    /// The objects of `kind`, or, without one, those that fit the role.
    fn of_kind_or_role(
        &self,
        kind: Option<ObjectKind>,
        role: Role,
    ) -> impl Iterator<Item = &'w ObservedObject> + '_ {
        self.world.objects.iter().filter(move |o| match kind {
            Some(k) => o.kind == k,
            None => Self::role_fits(role, o),
        })
    }

    fn resolve_item(
        &mut self,
        item: &Item,
        np: &NounPhrase,
        role: Role,
    ) -> Result<Vec<String>, PlanError> {
        let phrase = np.words.clone();
        let world = self.world;
        match item {
            Item::Pronoun => self.resolve_pronoun(np, role),
            Item::Everything => {
                self.compares = true;
                // "everything": all there is to pick up (or to put into).
                let role = if role == Role::Any {
                    Role::Object
                } else {
                    role
                };
                Ok(self
                    .of_kind_or_role(None, role)
                    .map(|o| o.id.clone())
                    .collect())
            }
            Item::Matching => Err(PlanError::NotFound {
                phrase,
                why: "\"its colour\" needs an object to match".into(),
            }),
            Item::Others(kind) | Item::Other(kind)
                if role != Role::Any && self.of_kind_or_role(*kind, role).next().is_none() =>
            {
                let k = kind.map_or(Self::role_noun(role), |k| k.name());
                Err(PlanError::Unexplored {
                    phrase,
                    kind: k.to_string(),
                })
            }
            Item::Others(kind) => {
                self.compares = true;
                Ok(self.not_mentioned(*kind, role))
            }
            Item::Other(kind) => {
                self.compares = true;
                let left = self.not_mentioned(*kind, role);
                match left.as_slice() {
                    [one] => Ok(vec![one.clone()]),
                    [] => Err(PlanError::NotFound {
                        phrase,
                        why: "there is no other one".into(),
                    }),
                    many => Err(PlanError::Ambiguous {
                        phrase,
                        why: format!("{} others fit", many.len()),
                        candidates: many.to_vec(),
                    }),
                }
            }
            Item::Expr { expr, plural } => {
                if !matches!(expr.selector, Selector::Only)
                    || *plural
                    || np.quantity != Quantity::Listed
                {
                    // Which one(s) depends on the others there are.
                    self.compares = true;
                }
                // Words that name no kind ("the red one") speak of what
                // fits the role: things to pick up, or containers.
                let scoped;
                let world = if expr.what.kind.is_none() && role != Role::Any {
                    scoped = WorldModel {
                        objects: world
                            .objects
                            .iter()
                            .filter(|o| Self::role_fits(role, o))
                            .cloned()
                            .collect(),
                        ..world.clone()
                    };
                    &scoped
                } else {
                    world
                };
                if let Some(set) = self.select_set(world, expr, *plural, np)? {
                    return Ok(set);
                }
                self.ground_one(world, expr, phrase)
            }
        }
    }

    /// "it", "them": what the command named last (for a container, the
    /// last target, or the containers among the last objects).
    fn resolve_pronoun(&mut self, np: &NounPhrase, role: Role) -> Result<Vec<String>, PlanError> {
        self.unused_topic = None;
        let containers: Vec<String> = self
            .last_objects
            .iter()
            .filter(|id| self.kind(id).is_some_and(|k| k.is_container()))
            .cloned()
            .collect();
        let ids: Vec<String> = match role {
            Role::Container if self.last_target.is_some() => {
                self.last_target.iter().cloned().collect()
            }
            Role::Container => containers,
            _ => self.last_objects.clone(),
        };
        if ids.is_empty() {
            // "put all of them in the blue bin": everything there is.
            if np.quantity == Quantity::All {
                return self.resolve_item(&Item::Everything, np, role);
            }
            return Err(PlanError::NoAntecedent(np.words.clone()));
        }
        Ok(ids)
    }

    /// The objects of `kind` (without one: that fit the role) the command
    /// has not named.
    fn not_mentioned(&self, kind: Option<ObjectKind>, role: Role) -> Vec<String> {
        self.of_kind_or_role(kind, role)
            .filter(|o| !self.mentioned.contains(&o.id))
            .map(|o| o.id.clone())
            .collect()
    }

    /// The objects a quantity picks from those that fit `expr` ("all the
    /// cubes", "the red cubes", "the two leftmost cubes", "the middle
    /// three", "both left cubes"); `None` when the phrase names one object.
    fn select_set(
        &self,
        world: &WorldModel,
        expr: &Expression,
        plural: bool,
        np: &NounPhrase,
    ) -> Result<Option<Vec<String>>, PlanError> {
        let viewer = Pose2D::default();
        let matching = || -> Vec<&ObservedObject> {
            world
                .objects
                .iter()
                .filter(|o| expr.what.matches(o))
                .collect()
        };
        let lateral = |o: &ObservedObject| seen_from(&viewer, o).1;
        let ids = |objects: &[&ObservedObject]| objects.iter().map(|o| o.id.clone()).collect();
        match (np.quantity, &expr.selector) {
            (Quantity::All, Selector::Only) | (Quantity::Both, Selector::Only) => {
                Ok(Some(ids(&matching())))
            }
            (Quantity::Listed, Selector::Only) if plural => Ok(Some(ids(&matching()))),
            (Quantity::Count(n), sel) | (Quantity::Middle(n), sel)
                if matches!(
                    sel,
                    Selector::Only | Selector::FromLeft(1) | Selector::FromRight(1)
                ) =>
            {
                let mut m = matching();
                m.sort_by(|a, b| lateral(b).total_cmp(&lateral(a)));
                let n = n.min(m.len());
                let chosen: Vec<&ObservedObject> = match (np.quantity, sel) {
                    (Quantity::Middle(_), _) => {
                        if (m.len() - n) % 2 != 0 {
                            return Err(PlanError::Ambiguous {
                                phrase: np.words.clone(),
                                why: "there is no middle of that many".into(),
                                candidates: ids(&m),
                            });
                        }
                        let skip = (m.len() - n) / 2;
                        m[skip..skip + n].to_vec()
                    }
                    (_, Selector::FromLeft(_)) => m[..n].to_vec(),
                    (_, Selector::FromRight(_)) => m[m.len() - n..].to_vec(),
                    _ if m.len() == n => m,
                    _ => {
                        return Err(PlanError::Ambiguous {
                            phrase: np.words.clone(),
                            why: format!("{} fit, not {n}", m.len()),
                            candidates: ids(&m),
                        })
                    }
                };
                Ok(Some(ids(&chosen)))
            }
            (Quantity::Both, Selector::FromLeft(1) | Selector::FromRight(1)) => {
                let mut m = matching();
                m.sort_by(|a, b| lateral(b).total_cmp(&lateral(a)));
                let n = 2.min(m.len());
                let chosen = if matches!(expr.selector, Selector::FromLeft(_)) {
                    m[..n].to_vec()
                } else {
                    m[m.len() - n..].to_vec()
                };
                Ok(Some(ids(&chosen)))
            }
            _ => Ok(None),
        }
    }

    /// The one object `expr` refers to. A plainly named object not seen yet
    /// is looked for first ("find the yellow bin", "put it in the red bin")
    /// while no object of its kind has been seen; once some are, one not
    /// among them is [`PlanError::NotSeen`]: the camera sees part of the
    /// room, so the node looks around once before it says it is not there.
    fn ground_one(
        &mut self,
        world: &WorldModel,
        expr: &Expression,
        phrase: String,
    ) -> Result<Vec<String>, PlanError> {
        let why = match ground(expr, world, &Pose2D::default()) {
            Grounding::Found(id) => return Ok(vec![id]),
            Grounding::Ambiguous { candidates, why } => {
                return Err(PlanError::Ambiguous {
                    phrase,
                    why,
                    candidates,
                })
            }
            Grounding::NotFound(why) => why,
        };
        let kind_seen = |k: ObjectKind| world.objects.iter().any(|o| o.kind == k);
        if let (Selector::Only, Some(c), Some(k)) =
            (&expr.selector, expr.what.color, expr.what.kind)
        {
            if kind_seen(k) {
                let known: Vec<&str> = world
                    .objects
                    .iter()
                    .filter(|o| o.kind == k)
                    .map(|o| o.id.as_str())
                    .collect();
                return Err(PlanError::NotSeen {
                    phrase,
                    why: format!("{why} (I know {})", known.join(", ")),
                });
            }
            let id = object_id(c, k);
            if !self.unseen.contains(&id) {
                self.unseen.push(id.clone());
            }
            return Ok(vec![id]);
        }
        if let Some(k) = expr.what.kind.filter(|k| !kind_seen(*k)) {
            // "the left bin" before any bin was seen: look first.
            return Err(PlanError::Unexplored {
                phrase,
                kind: k.name().to_string(),
            });
        }
        if expr
            .selector
            .anchors()
            .into_iter()
            .any(|a| matches!(ground(a, world, &Pose2D::default()), Grounding::NotFound(_)))
        {
            // "the cube next to the red bin" while that bin is out of view:
            // look around once before saying it is not there.
            return Err(PlanError::NotSeen { phrase, why });
        }
        Err(PlanError::NotFound { phrase, why })
    }

    /// The container for one object: the target phrase, or the bin of its colour.
    fn target_for(
        &mut self,
        object: &str,
        target: &NounPhrase,
    ) -> Result<Option<String>, PlanError> {
        if target.items.iter().any(|i| matches!(i, Item::Matching)) {
            self.compares = true;
            if !self.world.objects.iter().any(|b| b.kind.is_container()) {
                return Err(PlanError::Unexplored {
                    phrase: target.words.clone(),
                    kind: "bin".into(),
                });
            }
            let color = self
                .world
                .get(object)
                .map(|o| o.color)
                .or_else(|| rosetta_common::world::parse_object_id(object).map(|(c, _)| c));
            return Ok(color.and_then(|c| {
                self.world
                    .objects
                    .iter()
                    .find(|o| o.kind.is_container() && o.color == c)
                    .map(|o| o.id.clone())
            }));
        }
        let ids = self.resolve(target, Role::Container)?;
        match ids.as_slice() {
            [one] => Ok(Some(one.clone())),
            many => Err(PlanError::Ambiguous {
                phrase: target.words.clone(),
                why: "I can put it into one container".into(),
                candidates: many.to_vec(),
            }),
        }
    }

    fn clause(&mut self, c: &Clause) -> Result<(), PlanError> {
        let went_before = self.went.take();
        if let (Some(_), Clause::Topic(np)) = (&went_before, c) {
            // "go to the blue bin, then the red bin": drive on.
            return self.clause(&Clause::GoTo(np.clone()));
        }
        match c {
            Clause::Stop => self.steps.push(Skill::Stop),
            Clause::Wait(s) => {
                let max = rosetta_common::plan::MAX_WAIT_S;
                if !(0.0..=max).contains(s) {
                    return Err(PlanError::BadWait(*s, max));
                }
                self.steps.push(Skill::Wait { seconds: *s });
            }
            Clause::Topic(np) => {
                let ids = self.resolve(np, Role::Any)?;
                self.last_objects = ids;
                if let Some(t) = self.unused_topic.replace(np.words.clone()) {
                    return Err(PlanError::Read(ReadError::Unused(t)));
                }
            }
            Clause::Target(np) => self.pending_target = Some(np.clone()),
            Clause::Heading(np) => {
                if self.steps.is_empty() && self.pending_target.is_none() {
                    self.heading = Some(np.words.clone());
                }
            }
            Clause::Put { objects, target } => self.put_clause(objects, target.as_ref())?,
            Clause::Sort(np) => self.sort_clause(np)?,
            Clause::Pick(np) => {
                let objs = self.resolve(np, Role::Object)?;
                if objs.len() != 1 {
                    return Err(PlanError::OneAtATime(np.words.clone(), objs.len()));
                }
                self.pick(&objs[0])?;
                self.last_objects = objs;
            }
            Clause::GoPlace(p) => {
                if self.world.place(p).is_none() {
                    return Err(PlanError::UnknownPlace(p.clone()));
                }
                self.navigate(p);
                self.went = Some(p.clone());
            }
            Clause::GoTo(np) => self.go_to_clause(np)?,
            Clause::Find(np) => {
                let ids = self.resolve(np, Role::Any)?;
                for id in &ids {
                    let step = Skill::LookFor { object: id.clone() };
                    if !self.steps.contains(&step) {
                        self.steps.push(step);
                    }
                }
                // It is introduced now; a later step names it as seen.
                self.unseen
                    .retain(|u| !ids.contains(u) || self.world.get(u).is_some());
                self.last_objects = ids;
            }
        }
        Ok(())
    }

    /// "put OBJECTS into TARGET"; without a target, the one said before
    /// ("into the blue bin, put the red cube") or the last one put into.
    fn put_clause(
        &mut self,
        objects: &NounPhrase,
        target: Option<&NounPhrase>,
    ) -> Result<(), PlanError> {
        let mut objs = self.resolve(objects, Role::Object)?;
        // What the hand holds already goes first.
        if let Some(i) = self
            .holding
            .as_ref()
            .and_then(|h| objs.iter().position(|o| o == h))
        {
            let held = objs.remove(i);
            objs.insert(0, held);
        }
        let target = match target {
            Some(t) => Some(t.clone()),
            None => self.pending_target.take(),
        };
        let Some(target) = target else {
            // "bring it to the bin and drop it in": already done.
            if let Some(t) = self.last_target.clone() {
                for o in &objs {
                    if !self.already_in(o, &t) {
                        self.put(o, &t)?;
                    }
                }
                self.last_objects = objs;
                return Ok(());
            }
            return Err(PlanError::NoTarget(objects.words.clone()));
        };
        let mut last = None;
        for o in &objs {
            let t = match self.target_for(o, &target)? {
                Some(t) => t,
                None if objs.len() > 1 => continue,
                None => {
                    return Err(PlanError::NotFound {
                        phrase: target.words.clone(),
                        why: format!("no container has the colour of {o}"),
                    })
                }
            };
            self.put(o, &t)?;
            last = Some(t);
        }
        if last.is_none() {
            return Err(PlanError::NotFound {
                phrase: target.words.clone(),
                why: "no container matches".into(),
            });
        }
        self.last_target = last.clone();
        self.remember(&last.into_iter().collect::<Vec<_>>());
        self.last_objects = objs;
        Ok(())
    }

    /// "sort the cubes": each into the bin of its colour.
    fn sort_clause(&mut self, np: &NounPhrase) -> Result<(), PlanError> {
        let objs = self.resolve(np, Role::Object)?;
        let mut any = false;
        // No container seen yet (just after start): look around first.
        if !self.world.objects.iter().any(|b| b.kind.is_container()) {
            return Err(PlanError::Unexplored {
                phrase: np.words.clone(),
                kind: "bin".into(),
            });
        }
        for o in &objs {
            let color = self.world.get(o).map(|x| x.color);
            let bin = color.and_then(|c| {
                self.world
                    .objects
                    .iter()
                    .find(|b| b.kind.is_container() && b.color == c)
                    .map(|b| b.id.clone())
            });
            if let Some(b) = bin {
                self.put(o, &b)?;
                any = true;
            }
        }
        if !any {
            return Err(PlanError::NotFound {
                phrase: np.words.clone(),
                why: "no container has the colour of any of them".into(),
            });
        }
        self.last_objects = objs;
        Ok(())
    }

    /// "go to the red bin": a drive to one object, which later words may
    /// call "it" (a container: the target of "drop it in").
    fn go_to_clause(&mut self, np: &NounPhrase) -> Result<(), PlanError> {
        let ids = self.resolve(np, Role::Any)?;
        let [id] = ids.as_slice() else {
            return Err(PlanError::Ambiguous {
                phrase: np.words.clone(),
                why: "I can drive to one place at a time".into(),
                candidates: ids,
            });
        };
        self.navigate(id);
        self.went = Some(id.clone());
        if self.kind(id).is_some_and(|k| k.is_container()) {
            self.last_target = Some(id.clone());
        } else {
            self.last_objects = vec![id.clone()];
        }
        Ok(())
    }

    fn goals(&self) -> Vec<Goal> {
        let mut goals: Vec<Goal> = Vec::new();
        for (o, c) in &self.placed {
            goals.retain(|g| !matches!(g, Goal::InContainer { object, .. } if object == o));
            goals.push(Goal::InContainer {
                object: o.clone(),
                container: c.clone(),
            });
        }
        if let Some(h) = &self.holding {
            goals.push(Goal::Holding { object: h.clone() });
        }
        if let Some(t) = &self.went {
            goals.push(Goal::At { target: t.clone() });
        }
        goals
    }
}

/// Grounds clauses in `world`: the plan and its goal conditions.
pub fn compile(clauses: &[Clause], world: &WorldModel) -> Result<Reading, PlanError> {
    compile_holding(clauses, world, None)
}

/// [`compile`] for a robot that already holds `held` (a re-plan after a
/// step failed while it carried something): the plan starts from there,
/// and never opens the hand on it by picking again.
pub fn compile_holding(
    clauses: &[Clause],
    world: &WorldModel,
    held: Option<&str>,
) -> Result<Reading, PlanError> {
    let mut ctx = Ctx::new(world);
    ctx.holding = held.map(str::to_string);
    // "Put the green cube. In the blue bin.": a target right after a put
    // without one is its target.
    let mut merged: Vec<Clause> = Vec::with_capacity(clauses.len());
    for c in clauses {
        match (merged.last_mut(), c) {
            (
                Some(Clause::Put {
                    target: t @ None, ..
                }),
                Clause::Target(np),
            ) => *t = Some(np.clone()),
            _ => merged.push(c.clone()),
        }
    }
    for c in &merged {
        ctx.clause(c)?;
    }
    if let (Some(h), true) = (&ctx.heading, ctx.steps.is_empty()) {
        return Err(PlanError::NoTarget(h.clone()));
    }
    if let Some(t) = ctx.unused_topic.take() {
        // Nothing said what to do with it: a plan without it would drop words.
        if ctx
            .steps
            .iter()
            .any(|s| !matches!(s, Skill::LookFor { .. }))
            || merged.len() > 1
        {
            return Err(PlanError::Read(ReadError::Unused(t)));
        }
    }
    if ctx.steps.is_empty() && ctx.placed.is_empty() {
        // A bare noun phrase or a target with nothing to do.
        if merged
            .iter()
            .all(|c| matches!(c, Clause::Topic(_) | Clause::Target(_)))
        {
            return Err(PlanError::Read(ReadError::UnknownAction(
                "a thing without anything to do with it".into(),
            )));
        }
    }
    let goals = ctx.goals();
    // Look for what is not seen yet before anything else (the convention of
    // the plan language): the robot then knows at once whether it can finish.
    let mut looks: Vec<Skill> = Vec::new();
    for u in &ctx.unseen {
        let step = Skill::LookFor { object: u.clone() };
        if !looks.contains(&step) {
            looks.push(step);
        }
    }
    let rest: Vec<Skill> = ctx
        .steps
        .into_iter()
        .filter(|s| !(matches!(s, Skill::LookFor { .. }) && looks.contains(s)))
        .collect();
    looks.extend(rest);
    Ok(Reading {
        steps: looks,
        goals,
        referents: ctx.referents,
        compares: ctx.compares,
    })
}
